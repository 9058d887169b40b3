"""Resuming an Azure long-running operation whose worker died, without starting it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from asjob.providers.azure import AzureContext, connect_azure
from asjob.providers.azure.emulator import OPERATION_SECONDS_TAG, ArmEmulator
from asjob.providers.azure.resume import resume_call
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import VirtualMachine

import asjob
from asjob.session import Session
from asjob.writer import JobWriter, bind

from . import azurefuncs as f

RESUME_IN_A_NEW_PROCESS = """
import json, sys
import asjob
job = asjob.resume_job(int(sys.argv[1]))
vm = job.receive(wait=True)
print(json.dumps({"id": job.id, "name": job.name, "type": job.job_type_name,
                  "state": str(job.state), "vm": vm.name, "vm_type": type(vm).__name__,
                  "provisioning": vm.provisioning_state}))
"""


def connect(arm: ArmEmulator) -> AzureContext:
    return connect_azure(f.SUBSCRIPTION, base_url=arm.base_url, polling_interval=0.05)


def start_slow_create(
    arm: ArmEmulator, name: str, seconds: float = 1.5, kind: str = "process", detach: bool = False
) -> asjob.Job[Any]:
    compute = connect(arm).client(ComputeManagementClient)
    parameters = f.body(name, **{OPERATION_SECONDS_TAG: str(seconds)})
    return asjob.as_job(compute.virtual_machines.begin_create_or_update, kind=kind, detach=detach)(
        f.GROUP, name, parameters
    )


def wait_for_resume_data(session: Session, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = session.store.get_job(job_id).resume_data
        if data:
            saved: dict[str, Any] = json.loads(data)
            return saved
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} recorded no resume data")


def kill_worker(session: Session, job: asjob.Job[Any]) -> None:
    pid = session.store.get_job(job.id).host_pid
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    assert job.wait(timeout=10)
    assert str(job.state) == "Failed"
    assert isinstance(job.reason, asjob.WorkerLostError)


def resume_in_a_new_process(job_id: int) -> dict[str, Any]:
    resumed: dict[str, Any] = f.run_python(RESUME_IN_A_NEW_PROCESS, str(job_id))
    return resumed


def test_a_killed_worker_is_resumed_in_a_new_process_without_a_second_put(
    arm: ArmEmulator,
    session: Session,
) -> None:
    # A detached job waits in its own worker (it must not depend on this process).
    job = start_slow_create(arm, "vm-resumed", detach=True)
    wait_for_resume_data(session, job.id)
    kill_worker(session, job)
    assert f.requests_of(arm, "PUT") == [201]

    resumed = resume_in_a_new_process(job.id)

    assert resumed["vm"] == "vm-resumed" and resumed["vm_type"] == "VirtualMachine"
    assert resumed["provisioning"] == "Succeeded"
    assert resumed["state"] == "Completed"
    assert resumed["name"] == (
        "Resume of Long Running Operation for 'begin_create_or_update' on resource 'vm-resumed'"
    )
    assert resumed["type"] == "AzureLongRunningJob"
    assert resumed["id"] > job.id
    assert f.requests_of(arm, "PUT") == [201]  # the operation was not started again
    assert str(job.state) == "Failed"  # a finished job never changes state again


START_AND_HANG = """
import sys, time
import asjob
from asjob.providers.azure import connect_azure
from azure.mgmt.compute import ComputeManagementClient
from asjob.providers.azure.emulator import OPERATION_SECONDS_TAG

if __name__ == "__main__":
    compute = connect_azure(sys.argv[1], base_url=sys.argv[2], polling_interval=0.05).client(
        ComputeManagementClient
    )
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update)
    job = create("rg", "vm-orphaned", {"location": "westus", "tags": {OPERATION_SECONDS_TAG: "2"}})
    print(job.id, flush=True)
    time.sleep(60)
"""


def test_a_job_whose_starting_process_died_is_resumed_without_a_second_put(
    arm: ArmEmulator, session: Session
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", START_AND_HANG, f.SUBSCRIPTION, arm.base_url],
        stdout=subprocess.PIPE,
        text=True,
    ) as starter:
        try:
            assert starter.stdout is not None
            job_id = int(starter.stdout.readline())
            wait_for_resume_data(session, job_id)
            # The worker handed the wait to the starting process, which now dies with it.
            assert session.store.get_job(job_id).host_pid == starter.pid
        finally:
            starter.kill()
    job = asjob.get_job(id=job_id)[0]
    assert str(job.state) == "Failed"
    assert isinstance(job.reason, asjob.WorkerLostError)

    resumed = resume_in_a_new_process(job_id)
    assert resumed["vm"] == "vm-orphaned" and resumed["provisioning"] == "Succeeded"
    assert f.requests_of(arm, "PUT") == [201]


def test_a_stopped_job_is_resumed_in_this_process(arm: ArmEmulator, session: Session) -> None:
    job = start_slow_create(arm, "vm-stopped", seconds=1.0)
    wait_for_resume_data(session, job.id)
    job.stop()

    resumed = asjob.resume_job(job.id)
    vm = resumed.receive(wait=True)

    assert isinstance(vm, VirtualMachine) and vm.name == "vm-stopped"
    assert vm.provisioning_state == "Succeeded"
    assert resumed.command == job.command
    assert f.requests_of(arm, "PUT") == [201]
    assert str(job.state) == "Stopped"


def test_resume_refuses_a_running_job_whose_worker_is_alive(
    arm: ArmEmulator,
    session: Session,
) -> None:
    job = start_slow_create(arm, "vm-alive", seconds=1.0)
    wait_for_resume_data(session, job.id)
    with pytest.raises(asjob.InvalidJobStateError, match="alive"):
        asjob.resume_job(job.id)
    assert job.receive(wait=True).name == "vm-alive"
    with pytest.raises(asjob.InvalidJobStateError, match="completed"):
        asjob.resume_job(job)


def test_resume_refuses_a_job_with_nothing_to_resume(arm: ArmEmulator) -> None:
    connect(arm)
    job = asjob.start_job(f.subscription_after, 5)
    job.stop()
    with pytest.raises(asjob.InvalidJobStateError, match="no work to resume"):
        asjob.resume_job(job)


@pytest.mark.parametrize("what", [[1], {1: 2}, True, "1"])
def test_resume_refuses_what_is_not_one_job_by_type(session: Session, what: Any) -> None:
    # A list reached the store ("the job store failed"), and True was taken for job 1.
    with pytest.raises(TypeError, match=f"expected a Job or a job id, not {type(what).__name__}"):
        asjob.resume_job(what)


def test_a_job_is_resumed_once_at_a_time(arm: ArmEmulator, session: Session) -> None:
    job = start_slow_create(arm, "vm-once", seconds=1.5)
    wait_for_resume_data(session, job.id)
    job.stop()

    first = asjob.resume_job(job.id)
    with pytest.raises(asjob.InvalidJobStateError, match=f"being resumed as job {first.id}"):
        asjob.resume_job(job.id)  # two waits on one operation
    first.stop()
    second = asjob.resume_job(job.id)  # the first gave up: resumed again
    assert second.receive(wait=True).name == "vm-once"
    with pytest.raises(asjob.InvalidJobStateError, match=f"receive job {second.id} instead"):
        asjob.resume_job(job.id)
    asjob.remove_job(second)
    assert asjob.resume_job(job.id).receive(wait=True).name == "vm-once"  # its result was lost
    assert f.requests_of(arm, "PUT") == [201]


def test_a_job_whose_credential_object_is_gone_is_refused_at_resume(
    arm: ArmEmulator, session: Session, tmp_path: Path
) -> None:
    context = connect_azure(
        f.SUBSCRIPTION,
        credential=f.SecretCredential(arm.identity_endpoint, "s3cr3t"),
        base_url=arm.base_url,
        polling_interval=0.05,
    )
    compute = context.client(ComputeManagementClient)
    parameters = f.body("vm-object", **{OPERATION_SECONDS_TAG: "1.5"})
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update)(
        f.GROUP, "vm-object", parameters
    )
    wait_for_resume_data(session, job.id)
    job.stop()
    # What a later process has: the saved context, which names the object but cannot hold it.
    asjob.import_context(asjob.save_context(tmp_path / "context.json"))

    with pytest.raises(asjob.InvalidJobStateError, match=r"credential object \(.*SecretCredential"):
        asjob.resume_job(job.id)
    assert asjob.get_job(all_sessions=True) == [job]  # no doomed job was started


def test_a_worker_that_hands_a_resumed_wait_to_its_session_polls_nothing(
    arm: ArmEmulator, session: Session
) -> None:
    """Its session polls at once; a poll from the worker would be one request more per resume,
    and what it saw would be lost with the worker."""
    job = start_slow_create(arm, "vm-handed", seconds=3.0, detach=True)
    call = resume_call(json.dumps(wait_for_resume_data(session, job.id)))
    job.stop()
    time.sleep(0.1)  # a poll already under way may still land
    polls_before = len(f.requests_of(arm, "GET"))
    # As in a worker process whose session waits for it.
    writer = JobWriter(job.id, lambda stream, payload: None)
    writer.store, writer.session_host = session.store, (os.getpid(), 0.0)
    bind(writer)
    try:
        poller = call.invoke()
    finally:
        bind(None)
    time.sleep(0.5)  # a polling poller's first poll goes out at once

    assert len(f.requests_of(arm, "GET")) == polls_before
    assert poller.continuation_token()
