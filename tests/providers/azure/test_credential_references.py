"""What a saved context records of a credential object: enough to rebuild the same identity
elsewhere, or a reference that says it cannot be rebuilt (never a different identity)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from asjob.providers.azure.credentials import CredentialReference, reference_of
from azure.identity import (
    AzureCliCredential,
    CredentialUnavailableError,
    DefaultAzureCredential,
    ManagedIdentityCredential,
)

from asjob import redaction

USER_ASSIGNED = "33333333-0000-0000-0000-0000000000c1"


@pytest.fixture(params=["app service", "virtual machine"])
def host(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """azure-identity picks the credential behind ManagedIdentityCredential from the host's
    environment: App Service's variables, else the VM's metadata endpoint (IMDS)."""
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "app service":
        monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", "not-a-secret")


def rebuilt(credential: Any) -> CredentialReference:
    """The reference as another process reads it from a saved context, less the name of the
    type it was made from (kept for messages)."""
    reference = CredentialReference.from_data(reference_of(credential).to_data())
    return dataclasses.replace(reference, type_name=None)


def test_a_user_assigned_managed_identity_keeps_its_client_id(host: None) -> None:
    reference = rebuilt(ManagedIdentityCredential(client_id=USER_ASSIGNED))

    assert reference == CredentialReference.managed_identity(USER_ASSIGNED)
    assert rebuilt(reference.build()) == reference


def test_a_system_assigned_managed_identity_is_recorded_as_one(host: None) -> None:
    assert rebuilt(ManagedIdentityCredential()) == CredentialReference.managed_identity()


def test_an_identity_named_by_resource_id_is_not_rebuilt_as_another(host: None) -> None:
    named = ManagedIdentityCredential(identity_config={"resource_id": "/subscriptions/s/rg/id"})

    reference = rebuilt(named)
    assert reference.kind == "object" and not reference.rebuildable


def test_the_default_credentials_managed_identity_keeps_its_client_id(host: None) -> None:
    reference = rebuilt(DefaultAzureCredential(managed_identity_client_id=USER_ASSIGNED))

    assert reference == CredentialReference.default(managed_identity_client_id=USER_ASSIGNED)


def test_the_azure_cli_login_keeps_its_tenant() -> None:
    reference = rebuilt(AzureCliCredential(tenant_id="tenant-of-the-login"))

    assert reference == CredentialReference.azure_cli("tenant-of-the-login")


def test_the_advice_for_a_credential_object_survives_the_redaction_of_stored_failures() -> None:
    """A job's failure is stored redacted: advice that looked like a secret was unreadable."""
    with pytest.raises(CredentialUnavailableError) as caught:
        CredentialReference("object", type_name="mymodule.MyCredential").build()

    assert "CredentialReference" in str(caught.value)
    assert redaction.scrubbed(str(caught.value)) == str(caught.value)
