"""Context persistence (save, import, autosave) with the Azure context, and where secrets go."""

from __future__ import annotations

import base64
import gc
import json
import logging
import os
import pickle
import stat
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from asjob.providers.azure import AzureContext, CredentialReference, connect_azure
from asjob.providers.azure.emulator import ArmEmulator
from azure.core.exceptions import ResourceExistsError
from azure.identity import (
    ClientSecretCredential,
    CredentialUnavailableError,
    ManagedIdentityCredential,
)
from azure.mgmt.compute import ComputeManagementClient

import asjob
from asjob import context as asjob_context
from asjob.session import Session
from asjob.worker.payload import Channel, sending_over

from . import azurefuncs as f

IN_A_FRESH_PROCESS = """
import json, asjob
from tests.providers.azure import azurefuncs
context = asjob.get_context()
answer = {"context": None if context is None else context.to_data()}
if context is not None:
    answer["job"] = asjob.start_job(azurefuncs.subscription_of_context).receive(wait=True)
print(json.dumps(answer))
"""
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session: Session) -> Iterator[ArmEmulator]:
    f.isolate_contexts(tmp_path, monkeypatch)
    with f.emulator(operation_seconds=0.2) as emulator:
        f.point_identity_at(emulator, monkeypatch)
        yield emulator
        session.close()


def fresh_process() -> dict[str, object]:
    answer: dict[str, object] = f.run_python(IN_A_FRESH_PROCESS, cwd=ROOT)
    return answer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_save_and_import_keep_references_only(arm: ArmEmulator, tmp_path: Path) -> None:
    reference = CredentialReference.client_secret(
        "tenant-1", "client-1", secret_variable="MY_SP_SECRET"
    )
    context = connect_azure(
        f.SUBSCRIPTION, credential=reference, base_url=arm.base_url, polling_interval=0.5
    )
    path = asjob.save_context(tmp_path / "saved" / "context.json")

    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["context.json"]  # no temporary left
    saved = json.loads(path.read_text())
    assert saved["provider"] == "azure"
    assert saved["data"]["credential"] == {
        "kind": "client_secret",
        "tenant_id": "tenant-1",
        "client_id": "client-1",
        "secret_variable": "MY_SP_SECRET",
    }

    asjob.set_context(None)
    imported = asjob.import_context(path)
    assert isinstance(imported, AzureContext) and asjob.get_context() is imported
    assert imported == context
    assert imported.to_data() == context.to_data()


def test_a_reference_builds_its_credential_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reference = CredentialReference.client_secret(
        "tenant-1", "client-1", secret_variable="MY_SP_SECRET"
    )
    monkeypatch.delenv("MY_SP_SECRET", raising=False)
    with pytest.raises(CredentialUnavailableError, match="MY_SP_SECRET"):
        reference.build()
    monkeypatch.setenv("MY_SP_SECRET", "from-the-environment")
    assert isinstance(reference.build(), ClientSecretCredential)


def test_only_a_context_can_be_saved(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="only an asjob Context"):
        asjob.save_context(tmp_path / "c.json", context={"tenant": "t1"})


def test_autosave_is_picked_up_by_a_fresh_process_and_its_jobs(arm: ArmEmulator) -> None:
    connect_azure(f.SUBSCRIPTION, base_url=arm.base_url)
    path = asjob.enable_context_autosave()
    assert path == asjob_context.context_file() and mode(path) == 0o600
    connect_azure("33333333-0000-0000-0000-000000000000", base_url=arm.base_url)

    answer = fresh_process()
    assert answer["context"] == {
        "subscription_id": "33333333-0000-0000-0000-000000000000",
        "credential": {"kind": "default"},
        "cloud": "AzureCloud",
        "base_url": arm.base_url,
    }
    assert answer["job"] == "33333333-0000-0000-0000-000000000000"

    asjob.disable_context_autosave()
    assert not path.exists()
    assert fresh_process() == {"context": None}
    assert asjob.get_context().subscription_id == "33333333-0000-0000-0000-000000000000"


def _processes_of_job(pid: int) -> list[psutil.Process]:
    worker = psutil.Process(pid)
    return [worker, worker.parent()]  # the worker and the fork server it was forked from


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def test_a_secret_reaches_the_worker_only_in_memory(
    arm: ArmEmulator,
    session: Session,
    tmp_path: Path,
    store_path: Path,
) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    connect_azure(
        f.SUBSCRIPTION,
        credential=f.SecretCredential(arm.identity_endpoint, secret),
        base_url=arm.base_url,
        polling_interval=0.05,
    )
    autosaved = asjob.enable_context_autosave()
    saved = asjob.save_context(tmp_path / "explicit.json")
    compute = asjob.get_context().client(ComputeManagementClient)

    job = asjob.start_job(f.credential_type_and_pid, 1.5)
    vm_job = asjob.as_job(compute.virtual_machines.begin_create_or_update)(
        f.GROUP, "vm-secret", f.body("vm-secret")
    )
    deadline = time.monotonic() + 10
    while session.store.get_job(job.id).host_pid in (None, os.getpid()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    seen = b""
    for process in _processes_of_job(session.store.get_job(job.id).host_pid or 0):
        seen += _read(f"/proc/{process.pid}/environ") + _read(f"/proc/{process.pid}/cmdline")
    credential_type, _ = job.receive(wait=True)
    assert vm_job.receive(wait=True).name == "vm-secret"

    # The secret-holding object reached the worker (through its private socket)...
    assert credential_type == "SecretCredential"
    # ...and nowhere else: not the worker's or fork server's environment or command line,
    # not the store, not a context file.
    files = [*store_path.parent.iterdir(), autosaved, saved]
    assert any(p.name.endswith("-wal") or p.name.endswith(".db") for p in files)
    for path in files:
        assert secret.encode() not in _read(str(path)), path
    assert secret.encode() not in seen
    assert json.loads(saved.read_text())["data"]["credential"]["kind"] == "object"


def test_an_in_memory_credential_cannot_be_rebuilt_from_a_file(
    arm: ArmEmulator,
    tmp_path: Path,
) -> None:
    connect_azure(
        f.SUBSCRIPTION,
        credential=f.SecretCredential(arm.identity_endpoint, "x"),
        base_url=arm.base_url,
    )
    path = asjob.save_context(tmp_path / "c.json")
    imported = asjob.import_context(path)
    with pytest.raises(CredentialUnavailableError, match="held in memory"):
        imported.token_credential.get_token(imported.arm_scope)


def test_a_vm_password_is_not_in_the_recorded_continuation_token(
    arm: ArmEmulator,
    session: Session,
) -> None:
    password = "Pw-" + os.urandom(8).hex()
    connect_azure(f.SUBSCRIPTION, base_url=arm.base_url, polling_interval=0.05)
    parameters = f.body("vm-password")
    parameters["properties"]["osProfile"] = {
        "computerName": "vm-password",
        "adminUsername": "azureuser",
        "adminPassword": password,
    }
    job = asjob.start_job(f.create_vm_with, "vm-password", parameters)
    assert job.receive(wait=True).os_profile.admin_username == "azureuser"

    saved = json.loads(session.store.get_job(job.id).resume_data or "{}")
    token = base64.b64decode(saved["continuation_token"])
    assert b"azureuser" in token  # the first response's body is in the token...
    assert password.encode() not in token  # ...but, as from ARM, never the password


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_failed_call_stores_neither_its_access_token_nor_what_it_sent(
    arm: ArmEmulator, session: Session, store_path: Path, kind: str
) -> None:
    password = "Pw-" + os.urandom(8).hex()
    context = connect_azure(f.SUBSCRIPTION, base_url=arm.base_url, polling_interval=0.05)
    parameters = f.body("vm-refused")
    parameters["properties"]["osProfile"] = {"adminUsername": "u", "adminPassword": password}
    arm.inject_fault(409, method="PUT", code="Conflict", message="Injected conflict.")
    compute = context.client(ComputeManagementClient)
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update, kind=kind)(
        f.GROUP, "vm-refused", parameters
    )
    with pytest.raises(ResourceExistsError) as info:
        job.receive(wait=True, keep=True)
    token = context.token_credential.get_token(context.arm_scope).token.encode()

    # The SDK's own error, with what it reports; the request it answered, without credentials.
    assert info.value.status_code == 409 and info.value.error.code == "Conflict"
    request = info.value.response.request
    assert request.method == "PUT" and "vm-refused" in request.url
    assert request.headers["Authorization"] == "REDACTED"
    assert request.headers["Accept"] == "application/json"
    session.close()  # everything written
    for path in store_path.parent.iterdir():
        stored = _read(str(path))
        assert token not in stored and password.encode() not in stored, path


def test_only_a_local_workers_payload_carries_the_credential_object(arm: ArmEmulator) -> None:
    secret = "s3cr3t-" + os.urandom(8).hex()
    context = connect_azure(
        f.SUBSCRIPTION,
        credential=f.SecretCredential(arm.identity_endpoint, secret),
        base_url=arm.base_url,
        headers={"x-api-key": "k"},  # a client option: in memory and payloads only
    )
    token = context.token_credential.get_token(context.arm_scope).token.encode()

    anything = pickle.dumps(context)  # a result, a record: no secret of any kind
    with sending_over(Channel.NETWORK):
        remote = pickle.dumps(context)
    with sending_over(Channel.LOCAL):
        local = pickle.dumps(context)

    assert secret.encode() not in anything and token not in anything
    assert b"x-api-key" not in anything and b"x-api-key" in local and b"x-api-key" in remote
    assert secret.encode() not in remote and token in remote
    # A local worker asks the session for a token when it needs one (the broker): its payload
    # carries where to ask, not a token, and the credential object for when nobody answers.
    assert secret.encode() in local and token not in local
    assert pickle.loads(anything).to_data() == context.to_data()


def test_a_credential_class_is_refused_with_how_to_fix_it(arm: ArmEmulator) -> None:
    with pytest.raises(TypeError, match=r"not the class .*ManagedIdentityCredential\(\)"):
        connect_azure(f.SUBSCRIPTION, credential=ManagedIdentityCredential)
    assert asjob.get_context() is None


@pytest.mark.parametrize("subscription", [" ", "../../x", "my-subscription", f.SUBSCRIPTION + " "])
def test_what_is_not_a_subscription_id_is_refused_at_connect(
    arm: ArmEmulator, subscription: str
) -> None:
    with pytest.raises(ValueError, match="is not an Azure subscription id"):
        connect_azure(subscription, base_url=arm.base_url)
    assert asjob.get_context() is None


@pytest.mark.parametrize("not_a_client", [dict, object, "ComputeManagementClient"])
def test_what_is_not_an_sdk_client_class_is_refused_by_name(
    arm: ArmEmulator, not_a_client: object
) -> None:
    context = connect_azure(f.SUBSCRIPTION, base_url=arm.base_url)
    with pytest.raises(TypeError, match="is not an Azure SDK client class"):
        context.client(not_a_client)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_job_that_does_not_reach_azure_causes_no_token_request(
    arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    connect_azure(f.SUBSCRIPTION, base_url=arm.base_url)
    asjob.enable_context_autosave()
    monkeypatch.setattr(asjob_context, "_current", asjob_context._UNSET)  # as a new script

    job = asjob.start_job(f.subscription_of_context, kind=kind)

    assert job.receive(wait=True) == f.SUBSCRIPTION
    # Thread jobs share the caller's tokens; a worker asks the session for one only when it
    # needs one: so neither the start nor the job asked the identity endpoint.
    assert arm.token_requests == 0


def test_a_context_is_not_kept_alive_by_the_process_jobs_it_ran(arm: ArmEmulator) -> None:
    """A long-lived session that connects again and again keeps none of the old contexts,
    nor their clients' open connections, once their jobs are done."""
    context = AzureContext(
        subscription_id=f.SUBSCRIPTION, base_url=arm.base_url, polling_interval=0.05
    )
    compute = context.client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update)
    jobs = [create(f.GROUP, name, f.body(name)) for name in ("vm-kept1", "vm-kept2")]
    assert [job.receive(wait=True).name for job in jobs] == ["vm-kept1", "vm-kept2"]
    asjob.remove_job(jobs)
    dropped = weakref.ref(context)
    del context, compute, create, jobs
    gc.collect()
    assert dropped() is None


def test_a_detached_job_is_served_tokens_after_its_starter_dropped_the_context(
    arm: ArmEmulator,
) -> None:
    context = connect_azure(f.SUBSCRIPTION, base_url=arm.base_url)
    job = asjob.start_job(f.token_requests_in_worker, 1.0, detach=True)
    connect_azure(f.SUBSCRIPTION, base_url=arm.base_url)  # the current context is another now
    del context
    gc.collect()
    assert job.receive(wait=True) == 0  # the session's broker still served it


def test_the_sdks_network_trace_leaves_no_token_in_the_store(
    arm: ArmEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the worker logs at the caller's levels
    context = connect_azure(
        f.SUBSCRIPTION, base_url=arm.base_url, polling_interval=0.05, logging_enable=True
    )
    compute = context.client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update)
    job = create(f.GROUP, "vm-traced", f.body("vm-traced"))
    assert job.wait(timeout=30)
    traced = [r.message for r in job.debug + job.verbose if "Authorization" in r.message]
    assert traced, "no network trace recorded"
    assert all("REDACTED" in message for message in traced)
    token = context.token_credential.get_token(context.arm_scope).token
    store = asjob.session.current_session().store.path
    assert store is not None
    saved = b"".join(Path(f"{store}{suffix}").read_bytes() for suffix in ("", "-wal"))
    assert token.encode() not in saved
