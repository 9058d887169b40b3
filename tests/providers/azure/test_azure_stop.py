"""A stopped Azure job sends nothing more and records nothing more, even when the stop finds it
waiting to retry a request (the waits in ``retries.py`` end at a stop), against the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from asjob.providers.azure import AzureContext, Retries, connect_azure
from asjob.providers.azure import retries as r
from asjob.providers.azure.emulator import OPERATION_SECONDS_TAG, ArmEmulator
from azure.mgmt.compute import ComputeManagementClient
from tenacity import stop_after_attempt

import asjob
from asjob.session import Session
from tests.conftest import new_job_thread

from . import azurefuncs as f

RETRY_AFTER_S = 2.0
"""What the injected faults ask the retry to wait: far longer than a stop takes."""


@pytest.fixture(autouse=True)
def no_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 429 holds the subscription back in this process for its Retry-After: not into other tests.
    monkeypatch.setattr(r, "_local_holds", {})


def connect(arm: ArmEmulator) -> AzureContext:
    # Retries wait the Retry-After the faults name (the wait strategy applies only without one).
    retries = Retries(stop=stop_after_attempt(30))
    return connect_azure(
        f.SUBSCRIPTION, base_url=arm.base_url, polling_interval=0.05, retries=retries
    )


def wait_until(predicate: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def sent_since(arm: ArmEmulator, moment: float) -> list[tuple[str, str, int]]:
    return [(q["method"], q["path"], q["status"]) for q in arm.requests() if q["time"] > moment]


def test_a_stopped_thread_job_does_not_send_its_put_again(
    arm: ArmEmulator, session: Session
) -> None:
    arm.inject_fault(429, count=None, retry_after=RETRY_AFTER_S, method="PUT")
    compute = connect(arm).client(ComputeManagementClient)
    before = set(threading.enumerate())
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update, kind="thread")(
        f.GROUP, "vm-unwanted", f.body("vm-unwanted")
    )
    wait_until(lambda: f.requests_of(arm, "PUT") == [429])
    thread = new_job_thread(before, job.id)  # waiting out the Retry-After before its next PUT

    job.stop()
    stopped_at = time.time()
    arm.clear_faults()  # a PUT sent now would create the VM
    thread.join(1.0)

    assert str(job.state) == "Stopped"
    assert not thread.is_alive()  # its wait ended at the stop, not after the Retry-After
    time.sleep(0.2)
    assert sent_since(arm, stopped_at) == []
    assert arm.stats()["vms"] == 0
    assert session.store.get_job(job.id).resume_data is None


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_stopped_job_does_not_send_a_poll_again(
    arm: ArmEmulator, session: Session, kind: str
) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    parameters = f.body("vm-long", **{OPERATION_SECONDS_TAG: "60"})
    before = set(threading.enumerate())
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update, kind=kind)(
        f.GROUP, "vm-long", parameters
    )
    # A process job's poller runs in the session once the worker hands the wait off.
    wait_until(lambda: session.store.get_job(job.id).host_pid == os.getpid())
    wait_until(lambda: bool(session.store.get_job(job.id).resume_data))
    arm.inject_fault(503, count=None, retry_after=RETRY_AFTER_S, path_contains="operations")
    wait_until(lambda: 503 in f.requests_of(arm, "GET"))
    time.sleep(0.2)  # any poller still polling has met the fault: all are waiting to retry

    started = time.monotonic()
    job.stop()
    stopped_at = time.time()
    arm.clear_faults()
    assert time.monotonic() - started < 1
    assert str(job.state) == "Stopped"

    time.sleep(RETRY_AFTER_S + 0.5)  # past the Retry-After: the retry would have been sent
    assert sent_since(arm, stopped_at) == []
    pollers = [t for t in threading.enumerate() if t.name.startswith("LROPoller")]
    assert [t for t in pollers if t not in before] == []  # ended in its wait, not abandoned


def test_a_stopped_thread_job_ends_the_polls_of_a_poller_it_waits_on_itself(
    arm: ArmEmulator, session: Session
) -> None:
    connect(arm)
    parameters = f.body("vm-waited", **{OPERATION_SECONDS_TAG: "60"})
    before = set(threading.enumerate())
    job = asjob.start_job(f.create_vm_and_wait, "vm-waited", parameters, kind="thread")
    # The SDK's poller polls in a thread of its own, which the job started.
    wait_until(lambda: 202 in f.requests_of(arm, "GET") or 200 in f.requests_of(arm, "GET"))
    arm.inject_fault(503, count=None, retry_after=RETRY_AFTER_S, path_contains="operations")
    wait_until(lambda: 503 in f.requests_of(arm, "GET"))

    job.stop()
    stopped_at = time.time()
    arm.clear_faults()
    assert str(job.state) == "Stopped"

    time.sleep(RETRY_AFTER_S + 0.5)  # past the Retry-After: the retry would have been sent
    assert sent_since(arm, stopped_at) == []
    pollers = [t for t in threading.enumerate() if t.name.startswith("LROPoller")]
    assert [t for t in pollers if t not in before] == []


_SESSION_SCRIPT = """
import os, sys, threading, time
import asjob
from asjob.providers.azure import connect_azure
from azure.mgmt.compute import ComputeManagementClient
from tests.providers.azure import azurefuncs as f

if __name__ == "__main__":
    context = connect_azure(f.SUBSCRIPTION, base_url=sys.argv[1], polling_interval=0.05)
    compute = context.client(ComputeManagementClient)
    parameters = f.body("vm-xstop", **{sys.argv[2]: "60"})
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update)(
        f.GROUP, "vm-xstop", parameters
    )
    session = asjob.session.current_session()
    while session.store.get_job(job.id).host_pid != os.getpid():
        time.sleep(0.01)  # until the worker has handed the wait to this process
    print(job.id, flush=True)
    asjob.wait_job(job, timeout=30)
    time.sleep(0.5)
    pollers = [t for t in threading.enumerate() if t.name.startswith("LROPoller")]
    print(job.state, len(pollers), flush=True)
"""


def test_a_stop_from_another_process_ends_a_handed_off_wait_and_spares_its_session(
    arm: ArmEmulator, tmp_path: Path
) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[3]))
    script = tmp_path / "session.py"
    script.write_text(_SESSION_SCRIPT)
    with subprocess.Popen(
        [sys.executable, str(script), arm.base_url, OPERATION_SECONDS_TAG],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as session_process:
        assert session_process.stdout is not None
        job_id = session_process.stdout.readline().strip()
        assert job_id.isdigit(), session_process.communicate(timeout=30)[1]
        stopped = subprocess.run(
            [sys.executable, "-m", "asjob", "stop", job_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stopped.returncode == 0, stopped.stderr
        out, err = session_process.communicate(timeout=60)
    # The session lived on (it hosts the wait: a stop kills workers, never it), and its
    # thread ended the wait: no poller left.
    assert session_process.returncode == 0, err
    assert out.split() == ["Stopped", "0"]


def test_waits_outside_a_job_are_plain_sleeps() -> None:
    started = time.monotonic()
    r.pause(0.05)
    assert time.monotonic() - started >= 0.05
    assert not r.stopping()
