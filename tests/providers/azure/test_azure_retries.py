"""Error classification and the tenacity retry policy, in-process with ``responses``."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from asjob.providers.azure import Retries, connect_azure
from asjob.providers.azure import retries as r
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.compute import ComputeManagementClient
from tenacity import stop_after_attempt, wait_fixed

from . import azurefuncs as f

BASE = "https://127.0.0.1:9"
VM_URL = (
    f"{BASE}/subscriptions/{f.SUBSCRIPTION}/resourceGroups/{f.GROUP}"
    "/providers/Microsoft.Compute/virtualMachines/vm1"
)
VM = {
    "id": "/x/vm1",
    "name": "vm1",
    "location": "westus",
    "properties": {"provisioningState": "Succeeded"},
}


class StaticCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("static", int(time.time()) + 3600)


@pytest.fixture
def compute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ComputeManagementClient]:
    f.isolate_contexts(tmp_path, monkeypatch)
    monkeypatch.setattr(r, "_local_holds", {})
    context = connect_azure(
        f.SUBSCRIPTION,
        credential=StaticCredential(),
        base_url=BASE,
        retries=Retries(wait=wait_fixed(0.01), stop=stop_after_attempt(4)),
    )
    with responses.RequestsMock() as mock, context.client(ComputeManagementClient) as client:
        client.mock = mock  # type: ignore[attr-defined]
        yield client


def error(status: int, code: str, **headers: str) -> dict[str, Any]:
    return {
        "status": status,
        "json": {"error": {"code": code, "message": code}},
        "headers": headers,
    }


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 507, 599])
def test_transient_statuses(status: int) -> None:
    assert r.is_transient_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412, 501, 505])
def test_permanent_statuses(status: int) -> None:
    assert not r.is_transient_status(status)


def test_connection_errors_are_transient_when_safe_to_repeat() -> None:
    assert r.is_transient_error(ServiceRequestError("refused"), "POST")
    assert r.is_transient_error(ServiceResponseError("no answer"), "PUT")
    assert not r.is_transient_error(ServiceResponseError("no answer"), "POST")
    assert not r.is_transient_error(ValueError("a bug"), "GET")


class _Response:
    def __init__(self, **headers: str) -> None:
        self.headers = headers


def test_retry_after_forms() -> None:
    assert r.retry_after(_Response(**{"retry-after": "2"})) == 2.0
    assert r.retry_after(_Response(**{"retry-after-ms": "150"})) == 0.15
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (r.retry_after(_Response(**{"retry-after": later})) or 0) <= 30
    assert r.retry_after(_Response(**{"retry-after": "soon"})) is None
    assert r.retry_after(_Response()) is None


def test_transient_failures_are_retried(compute: ComputeManagementClient) -> None:
    mock = compute.mock  # type: ignore[attr-defined]
    mock.get(VM_URL, **error(503, "ServiceUnavailable"))
    mock.get(VM_URL, body=requests.ConnectionError("reset"))
    mock.get(VM_URL, json=VM)
    assert compute.virtual_machines.get(f.GROUP, "vm1").name == "vm1"
    assert len(mock.calls) == 3


def test_a_429_waits_its_retry_after_and_holds_the_subscription(
    compute: ComputeManagementClient,
) -> None:
    mock = compute.mock  # type: ignore[attr-defined]
    mock.get(VM_URL, **error(429, "TooManyRequests", **{"Retry-After": "0.3"}))
    mock.get(VM_URL, json=VM)
    started = time.monotonic()
    compute.virtual_machines.get(f.GROUP, "vm1")
    assert time.monotonic() - started >= 0.3
    assert r.hold_key(VM_URL) == f"azure:subscription:{f.SUBSCRIPTION}"
    assert f"azure:subscription:{f.SUBSCRIPTION}" in r._local_holds


@pytest.mark.parametrize(
    ("status", "code", "raised"),
    [
        (404, "ResourceNotFound", ResourceNotFoundError),
        (409, "Conflict", ResourceExistsError),
        (400, "InvalidParameter", HttpResponseError),
    ],
)
def test_permanent_failures_fail_at_once_with_the_sdk_type(
    compute: ComputeManagementClient,
    status: int,
    code: str,
    raised: type[Exception],
) -> None:
    mock = compute.mock  # type: ignore[attr-defined]
    # With Retry-After azure-core alone would retry even these (ARM.md); asjob does not.
    mock.get(VM_URL, **error(status, code, **{"Retry-After": "1"}))
    with pytest.raises(raised) as info:
        compute.virtual_machines.get(f.GROUP, "vm1")
    assert getattr(info.value, "error").code == code  # noqa: B009
    assert len(mock.calls) == 1


def test_retries_end_with_the_last_answer(compute: ComputeManagementClient) -> None:
    mock = compute.mock  # type: ignore[attr-defined]
    mock.get(VM_URL, **error(500, "InternalServerError"))
    with pytest.raises(HttpResponseError) as info:
        compute.virtual_machines.get(f.GROUP, "vm1")
    assert info.value.status_code == 500
    assert len(mock.calls) == 4  # stop_after_attempt(4), and no azure-core retries on top


def test_a_post_without_an_answer_is_not_repeated(compute: ComputeManagementClient) -> None:
    mock = compute.mock  # type: ignore[attr-defined]
    mock.post(f"{VM_URL}/start", body=requests.ReadTimeout("no answer"))
    with pytest.raises(ServiceResponseError):
        compute.virtual_machines.begin_start(f.GROUP, "vm1")
    assert len(mock.calls) == 1


class UnreachableIdentityCredential:
    """Fails as azure-identity does when its identity endpoint cannot be reached (after its
    own retries)."""

    def __init__(self) -> None:
        self.asked = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.asked += 1
        raise ServiceRequestError("Connection refused")


def test_a_credential_that_cannot_get_a_token_is_not_retried_around(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f.isolate_contexts(tmp_path, monkeypatch)
    credential = UnreachableIdentityCredential()
    context = connect_azure(
        f.SUBSCRIPTION,
        credential=credential,
        base_url=BASE,
        retries=Retries(wait=wait_fixed(0.01), stop=stop_after_attempt(4)),
    )
    with responses.RequestsMock() as mock, context.client(ComputeManagementClient) as client:
        with pytest.raises(ClientAuthenticationError, match="could not get a token"):
            client.virtual_machines.get(f.GROUP, "vm1")
        assert len(mock.calls) == 0
    assert credential.asked == 1  # its own retries are all there should be
