"""Job functions and helpers for the Azure provider tests (workers import them by reference)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asjob.providers.azure.emulator import ArmEmulator
from azure.core.credentials import AccessToken
from azure.core.polling import LROPoller
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import VirtualMachine

import asjob
from asjob import context as asjob_context


def run_python(script: str, *args: str, cwd: str | os.PathLike[str] | None = None) -> Any:
    """Run ``script`` in a fresh interpreter; return the JSON its last line of output holds."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


SUBSCRIPTION = "00000000-0000-0000-0000-0000000000a5"
GROUP = "rg-asjob"
LOCATION = "westus"

# Variables that would steer DefaultAzureCredential (or the HTTP stack) anywhere but the emulator.
PROXY_VARIABLES = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
]
FOREIGN_ENVIRONMENT = [
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_SUBSCRIPTION_ID",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    *PROXY_VARIABLES,
]


def point_identity_at(arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the real DefaultAzureCredential get its tokens from the emulator (ARM.md)."""
    for name in FOREIGN_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("IDENTITY_ENDPOINT", arm.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", "not-a-secret")
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "ManagedIdentityCredential")


def isolate_contexts(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private autosave file, and this process's context state as on start-up."""
    monkeypatch.setenv(asjob_context.CONTEXT_FILE_ENV, str(tmp_path / "config" / "context.json"))
    monkeypatch.setattr(asjob_context, "_current", asjob_context._UNSET)
    monkeypatch.setattr(asjob_context, "_autosave", None)


@contextmanager
def emulator(**settings: Any) -> Iterator[ArmEmulator]:
    settings.setdefault("operation_seconds", 0.3)
    with ArmEmulator(**settings) as arm:
        yield arm


def requests_of(arm: ArmEmulator, method: str) -> list[int]:
    return [r["status"] for r in arm.requests() if r["method"] == method]


def body(name: str, **tags: str) -> dict[str, Any]:
    return {
        "location": LOCATION,
        "tags": {"created-by": "asjob-tests", **tags},
        "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}},
    }


# -- job functions ---------------------------------------------------------------------------


def create_vm(name: str) -> LROPoller[VirtualMachine]:
    """A function (not an SDK method) that returns a poller: the job waits for it."""
    compute = asjob.current_context().client(ComputeManagementClient)
    poller: LROPoller[VirtualMachine] = compute.virtual_machines.begin_create_or_update(
        GROUP, name, body(name)
    )
    return poller


def create_vm_with(name: str, parameters: dict[str, Any]) -> LROPoller[VirtualMachine]:
    compute = asjob.current_context().client(ComputeManagementClient)
    poller: LROPoller[VirtualMachine] = compute.virtual_machines.begin_create_or_update(
        GROUP, name, parameters
    )
    return poller


def create_vm_and_wait(name: str, parameters: dict[str, Any]) -> VirtualMachine:
    """The usual script's function: it waits for the operation itself, with ``result()``."""
    return create_vm_with(name, parameters).result()


def subscription_of_context() -> str:
    return str(asjob.current_context().subscription_id)


def subscription_after(seconds: float) -> str:
    """The job's subscription, looked at only after the caller has had time to change its own."""
    time.sleep(seconds)
    return str(asjob.current_context().subscription_id)


def credential_type_and_pid(seconds: float) -> tuple[str, int]:
    """Which credential object reached this worker, and the worker's pid; stays for a while."""
    context = asjob.current_context()
    credential = context.token_credential.credential()
    time.sleep(seconds)
    return type(credential).__name__, os.getpid()


def token_requests_in_worker(after: float = 0.0) -> int:
    """How many tokens this job's worker asked its credential for (0: it used the broker's),
    first reaching Azure ``after`` seconds in."""
    time.sleep(after)
    compute = asjob.current_context().client(ComputeManagementClient)
    list(compute.virtual_machines.list(GROUP))
    return int(asjob.current_context().token_credential.requests)


class SecretCredential:
    """A credential of our own that holds a secret string (as a ClientSecretCredential does)
    and trades it for tokens at the emulator's identity endpoint."""

    def __init__(self, identity_endpoint: str, secret: str) -> None:
        self.identity_endpoint = identity_endpoint
        self.secret = secret

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        resource = scopes[0].removesuffix("/.default")
        query = urllib.parse.urlencode({"api-version": "2019-08-01", "resource": resource})
        request = urllib.request.Request(
            f"{self.identity_endpoint}?{query}", headers={"X-IDENTITY-HEADER": self.secret}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        return AccessToken(answer["access_token"], int(answer["expires_on"]))
