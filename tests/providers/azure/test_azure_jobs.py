"""The real azure-mgmt-compute SDK run through asjob jobs against the local ARM endpoint."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import psutil
import pytest
from asjob.providers.azure import AzureContext, Retries, connect_azure
from asjob.providers.azure.emulator import OPERATION_SECONDS_TAG, ArmEmulator
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import VirtualMachine
from tenacity import stop_after_attempt, wait_fixed

import asjob
from asjob.session import Session

from . import azurefuncs as f


def connect(arm: ArmEmulator, **options: Any) -> AzureContext:
    options.setdefault("retries", Retries(wait=wait_fixed(0.05), stop=stop_after_attempt(30)))
    return connect_azure(f.SUBSCRIPTION, base_url=arm.base_url, polling_interval=0.05, **options)


def test_twenty_vms_in_parallel_from_worker_processes(arm: ArmEmulator) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update)

    started = time.monotonic()
    jobs = [create(f.GROUP, f"vm{i:02d}", f.body(f"vm{i:02d}")) for i in range(20)]
    vms = [job.receive(wait=True) for job in jobs]
    elapsed = time.monotonic() - started

    assert [type(vm) for vm in vms] == [VirtualMachine] * 20
    assert [vm.name for vm in vms] == [f"vm{i:02d}" for i in range(20)]
    assert {vm.provisioning_state for vm in vms} == {"Succeeded"}
    assert elapsed < 0.3 * 20  # in parallel, not one after another
    job = jobs[3]
    assert job.job_type_name == "AzureLongRunningJob"
    assert job.name == "Long Running Operation for 'begin_create_or_update' on resource 'vm03'"
    assert str(job.state) == "Completed"
    assert f.requests_of(arm, "PUT") == [201] * 20
    assert arm.token_requests == 1  # 20 jobs, one token request: the caller brokers it


def test_progress_and_the_continuation_token_are_recorded(
    arm: ArmEmulator, session: Session
) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update)(
        f.GROUP, "vm-progress", f.body("vm-progress")
    )
    assert job.wait(timeout=30)
    assert [(p.activity, p.status) for p in job.progress] == [
        ("begin_create_or_update vm-progress", "InProgress")
    ]

    saved = json.loads(session.store.get_job(job.id).resume_data or "")
    assert saved["provider"] == "azure"
    assert saved["operation"]["method"] == "begin_create_or_update"
    assert saved["context"]["subscription_id"] == f.SUBSCRIPTION
    assert saved["continuation_token"]


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_function_that_returns_a_poller_is_waited_for(arm: ArmEmulator, kind: str) -> None:
    connect(arm)
    job = asjob.start_job(f.create_vm, "vm-fn", kind=kind)
    assert job.wait(timeout=30)
    assert job.progress[-1].activity == "begin_create_or_update vm-fn"
    vm = job.receive()

    assert isinstance(vm, VirtualMachine) and vm.name == "vm-fn"
    assert vm.provisioning_state == "Succeeded"
    assert job.job_type_name == "AzureLongRunningJob"


def test_a_paged_list_comes_back_as_a_list_of_every_page(arm: ArmEmulator, kind: str) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    names = [f"vm-list{i:02d}" for i in range(12)]  # more than one page (the endpoint's are 10)
    for name in names:
        compute.virtual_machines.begin_create_or_update(f.GROUP, name, f.body(name)).result()

    vms = asjob.as_job(compute.virtual_machines.list, kind=kind)(f.GROUP).receive(wait=True)

    assert type(vms) is list
    assert [type(vm) for vm in vms] == [VirtualMachine] * 12
    assert [vm.name for vm in vms] == names


def test_thread_jobs_share_the_callers_token(arm: ArmEmulator) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update, kind="thread")
    jobs = [create(f.GROUP, f"vm-t{i}", f.body(f"vm-t{i}")) for i in range(5)]
    assert [job.receive(wait=True).name for job in jobs] == [f"vm-t{i}" for i in range(5)]
    assert arm.token_requests == 1


def test_a_worker_does_not_ask_for_a_token_of_its_own(arm: ArmEmulator) -> None:
    connect(arm)
    jobs = [asjob.start_job(f.token_requests_in_worker) for _ in range(3)]
    assert [job.receive(wait=True) for job in jobs] == [0, 0, 0]
    assert arm.token_requests == 1


def test_a_failed_operation_fails_the_job_with_the_sdk_error(arm: ArmEmulator) -> None:
    arm.fail_operations_for("vm-doomed", "AllocationFailed", "No capacity in westus.")
    compute = connect(arm).client(ComputeManagementClient)
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update)(
        f.GROUP, "vm-doomed", f.body("vm-doomed")
    )
    with pytest.raises(HttpResponseError) as info:
        job.receive(wait=True)

    assert info.value.error.code == "AllocationFailed"
    assert "No capacity in westus." in str(info.value)
    assert str(job.state) == "Failed"
    assert f.requests_of(arm, "PUT") == [201]  # a failed operation is not retried


def test_a_409_fails_at_once_with_resource_exists_error(arm: ArmEmulator) -> None:
    arm.inject_fault(
        409, method="PUT", code="Conflict", message="Injected conflict.", retry_after=1
    )  # azure-core alone would retry this; tenacity must not
    compute = connect(arm).client(ComputeManagementClient)
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update)(
        f.GROUP, "vm-409", f.body("vm-409")
    )
    with pytest.raises(ResourceExistsError) as info:
        job.receive(wait=True)

    assert info.value.error.code == "Conflict"
    assert f.requests_of(arm, "PUT") == [409]  # not retried after its Retry-After either


def test_a_500_storm_is_survived(arm: ArmEmulator) -> None:
    arm.inject_fault(500, count=30)
    compute = connect(arm).client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update)
    jobs = [create(f.GROUP, f"vm-s{i}", f.body(f"vm-s{i}")) for i in range(8)]

    assert [job.receive(wait=True).name for job in jobs] == [f"vm-s{i}" for i in range(8)]
    assert arm.stats()["faults_served"] == 30
    assert f.requests_of(arm, "PUT").count(201) == 8


def test_a_429_storm_is_survived_honouring_retry_after(arm: ArmEmulator) -> None:
    arm.inject_fault(429, count=12, retry_after=0.2)
    compute = connect(arm).client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update)
    jobs = [create(f.GROUP, f"vm-r{i}", f.body(f"vm-r{i}")) for i in range(8)]

    assert [job.receive(wait=True).name for job in jobs] == [f"vm-r{i}" for i in range(8)]
    assert arm.stats()["faults_served"] == 12


def test_a_429_holds_back_the_other_jobs_of_the_session(arm: ArmEmulator) -> None:
    arm.inject_fault(429, count=1, retry_after=1.0, method="PUT")
    compute = connect(arm).client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update)
    first = create(f.GROUP, "vm-first", f.body("vm-first"))
    deadline = time.monotonic() + 10
    while 429 not in f.requests_of(arm, "PUT") and time.monotonic() < deadline:
        time.sleep(0.01)
    throttled_at = next(r["time"] for r in arm.requests() if r["status"] == 429)
    time.sleep(0.2)  # the 429's hold is in the store by now
    others = [create(f.GROUP, f"vm-held{i}", f.body(f"vm-held{i}")) for i in range(3)]

    assert [job.receive(wait=True).name for job in [first, *others]] == [
        "vm-first",
        "vm-held0",
        "vm-held1",
        "vm-held2",
    ]
    held = [r["time"] for r in arm.requests() if r["method"] == "PUT" and r["status"] == 201]
    assert len(held) == 4
    # Other worker processes sent nothing to the subscription until the Retry-After had passed.
    assert min(held) >= throttled_at + 0.95


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def fork_server_children() -> list[psutil.Process]:
    """The live processes this session's fork server has forked: job workers and one spare.
    (Its server is the newest: earlier tests' servers may live on, serving detached jobs.)"""
    servers = [p for p in psutil.Process().children() if "asjob.worker.server" in _cmdline(p)]
    server = max(servers, key=lambda p: p.create_time())
    return [c for c in server.children() if _status(c) not in (psutil.STATUS_ZOMBIE, None)]


# A process may end between being listed and being looked at.


def _cmdline(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def _status(process: psutil.Process) -> str | None:
    try:
        return str(process.status())
    except psutil.Error:
        return None


def test_a_process_job_hands_the_wait_to_its_session(arm: ArmEmulator, session: Session) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update)
    parameters = {
        f"vm-h{i}": f.body(f"vm-h{i}", **{OPERATION_SECONDS_TAG: "2.0"}) for i in range(5)
    }
    jobs = [create(f.GROUP, name, body) for name, body in parameters.items()]

    # Once the operation is under way, the worker process hands the job to this process and
    # ends; the job goes on Running here.
    wait_until(lambda: all(session.store.get_job(j.id).host_pid == os.getpid() for j in jobs))
    assert [str(job.state) for job in jobs] == ["Running"] * 5
    assert [job.kind for job in jobs] == ["thread"] * 5  # where each now runs
    wait_until(lambda: len(fork_server_children()) == 1)  # the spare alone: no job worker

    assert asjob.wait_job(jobs, timeout=30)
    assert [p.status for p in jobs[0].progress] == ["InProgress"]
    vms = [job.receive() for job in jobs]
    assert [type(vm) for vm in vms] == [VirtualMachine] * 5
    assert [vm.name for vm in vms] == list(parameters)
    assert {vm.provisioning_state for vm in vms} == {"Succeeded"}
    assert f.requests_of(arm, "PUT") == [201] * 5  # each operation was started once


@pytest.mark.parametrize("kind", ["process", "thread"])
@pytest.mark.parametrize("shape", ["sdk method", "function"])
def test_what_the_first_poll_sees_is_the_jobs_outcome(
    arm: ArmEmulator, kind: str, shape: str
) -> None:
    """A 404 to the first poll fails the operation at once (ARM.md), as the synchronous call
    shows; a process job that hands its wait to the session must not lose that answer."""
    compute = connect(arm).client(ComputeManagementClient)
    arm.inject_fault(404, method="GET", path_contains="operations", code="NotFound")
    with pytest.raises(HttpResponseError) as synchronous:
        compute.virtual_machines.begin_create_or_update(
            f.GROUP, "vm-sync", f.body("vm-sync")
        ).result()
    assert synchronous.value.status_code == 404

    arm.inject_fault(404, method="GET", path_contains="operations", code="NotFound")
    if shape == "sdk method":
        job = asjob.as_job(compute.virtual_machines.begin_create_or_update, kind=kind)(
            f.GROUP, "vm-polled", f.body("vm-polled")
        )
    else:
        job = asjob.start_job(f.create_vm, "vm-polled", kind=kind)
    with pytest.raises(HttpResponseError) as received:
        job.receive(wait=True)
    assert received.value.status_code == 404 and str(job.state) == "Failed"


@pytest.mark.parametrize("shape", ["sdk method", "resumed"])
def test_a_per_call_polling_interval_is_kept_wherever_the_wait_goes(
    arm: ArmEmulator, session: Session, shape: str
) -> None:
    """The token does not hold it (ARM.md): the session's poller, or a resumed one, must be
    given it again, or it polls at the client's interval (0.05 s here)."""
    compute = connect(arm).client(ComputeManagementClient)
    parameters = f.body("vm-patient", **{OPERATION_SECONDS_TAG: "1.0"})
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update, detach=shape == "resumed")(
        f.GROUP, "vm-patient", parameters, polling_interval=2.0
    )
    if shape == "resumed":
        wait_until(lambda: session.store.get_job(job.id).resume_data is not None)
        job.stop()
        job = asjob.resume_job(job.id)
    assert job.receive(wait=True).name == "vm-patient"
    polls = [r for r in arm.requests() if r["method"] == "GET" and "operations" in r["path"]]
    # Each poller polls once at its start, then every 2 s; at 0.05 s it would be some twenty.
    assert 1 <= len(polls) <= 3


def test_a_detached_process_job_waits_in_its_own_worker(arm: ArmEmulator, session: Session) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    parameters = f.body("vm-detached", **{OPERATION_SECONDS_TAG: "1.0"})
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update, detach=True)(
        f.GROUP, "vm-detached", parameters
    )
    wait_until(lambda: session.store.get_job(job.id).resume_data is not None)
    worker = session.store.get_job(job.id).host_pid
    assert worker != os.getpid() and psutil.pid_exists(worker)

    assert job.receive(wait=True).name == "vm-detached"


def test_stop_ends_the_wait_but_not_the_operation(arm: ArmEmulator) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    parameters = f.body("vm-stopped", **{OPERATION_SECONDS_TAG: "1.0"})
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update)(
        f.GROUP, "vm-stopped", parameters
    )
    deadline = time.monotonic() + 10
    while 201 not in f.requests_of(arm, "PUT") and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()
    assert str(job.state) == "Stopped"

    time.sleep(1.1)
    assert compute.virtual_machines.get(f.GROUP, "vm-stopped").provisioning_state == "Succeeded"


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_stopped_job_polls_no_more(arm: ArmEmulator, kind: str) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    parameters = f.body("vm-quiet", **{OPERATION_SECONDS_TAG: "3.0"})
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update, kind=kind)(
        f.GROUP, "vm-quiet", parameters
    )

    def polls() -> int:
        return sum(1 for r in arm.requests() if r["method"] == "GET")

    wait_until(lambda: polls() >= 3)
    job.stop()
    time.sleep(0.1)  # a poll already under way may still land
    after_stop = polls()
    time.sleep(0.6)  # twelve polling intervals

    assert str(job.state) == "Stopped"
    assert polls() == after_stop


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_an_explicit_context_wins_and_later_changes_do_not_reach_a_started_job(
    arm: ArmEmulator,
    kind: str,
) -> None:
    connect(arm)
    other = AzureContext(
        subscription_id="11111111-0000-0000-0000-000000000000", base_url=arm.base_url
    )
    explicit = asjob.start_job(f.subscription_of_context, context=other, kind=kind)
    started = asjob.start_job(f.subscription_after, 0.5, kind=kind)
    connect_azure("22222222-0000-0000-0000-000000000000", base_url=arm.base_url)
    late = asjob.start_job(f.subscription_of_context, kind=kind)

    assert explicit.receive(wait=True) == "11111111-0000-0000-0000-000000000000"
    assert started.receive(wait=True) == f.SUBSCRIPTION
    assert late.receive(wait=True) == "22222222-0000-0000-0000-000000000000"
