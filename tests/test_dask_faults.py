"""The ``dask`` kind when its cluster fails under it: the only worker killed, the scheduler
killed or frozen. Each test has a cluster of its own (one scheduler, one worker on 127.0.0.1),
since it breaks it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import asjob
from asjob import Job, JobState
from asjob.kinds.dask import DaskKind
from asjob.kinds.dask.loopback import LoopbackCluster, stop_loopback_cluster
from asjob.session import Session
from tests import daskfuncs as d
from tests import jobfuncs as f
from tests.cli_support import wait_gone

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LoopbackCluster]:
    running = d.start_cluster(tmp_path / "dask", workers=1, nthreads=2)
    yield running
    scheduler = running.processes[0].pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(scheduler, signal.SIGCONT)  # a test may have frozen it
    stop_loopback_cluster(running)


def _started(path: Path, seconds: float = 30) -> list[int]:
    """The pids that ``note_start_and_sleep`` wrote to ``path``, once there is one."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().split()):
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.02)
    return [int(pid) for pid in path.read_text().split()]


def _sleeping(kind: DaskKind, directory: Path, count: int) -> tuple[list[Job[Any]], list[int]]:
    """``count`` jobs that sleep a minute, once each has begun: the jobs and their pids."""
    jobs = [
        asjob.start_job(d.note_start_and_sleep, str(directory / f"sleeper{i}"), 60, kind=kind)
        for i in range(count)
    ]
    return jobs, [_started(directory / f"sleeper{i}")[0] for i in range(count)]


def test_a_job_whose_only_worker_is_killed_fails_naming_the_worker(
    cluster: LoopbackCluster, session: Session, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    job = asjob.start_job(d.note_start_and_sleep, str(started), 60, kind=DaskKind(cluster.address))
    [job_pid] = _started(started)
    [worker] = d.wait_for_workers(cluster.address, 1)
    deadline = time.monotonic() + 10
    while job.location != worker:  # reported begun there (until then, where is not known)
        assert time.monotonic() < deadline, job.location
        time.sleep(0.05)

    # The worker and its nanny: no worker is left, so Dask keeps the task to run later.
    os.killpg(cluster.processes[1].pid, signal.SIGKILL)

    assert job.wait(timeout=30), "still Running after its worker was killed"
    assert job.state is JobState.Failed
    with pytest.raises(asjob.WorkerLostError, match=f"worker {worker} left the cluster"):
        job.receive()
    assert wait_gone(job_pid)


def test_a_job_queued_on_a_lost_worker_runs_on_the_next_one(
    cluster: LoopbackCluster, session: Session, tmp_path: Path
) -> None:
    kind = DaskKind(cluster.address)
    running, _ = _sleeping(kind, tmp_path, 2)
    queued = asjob.start_job(d.note_start_and_sleep, str(tmp_path / "q"), 0, kind=kind)
    time.sleep(1)  # the worker's two threads are busy: the third job waits there

    os.killpg(cluster.processes[1].pid, signal.SIGKILL)
    assert asjob.wait_job(running, timeout=30) == running
    assert queued.state is JobState.Running  # not begun anywhere: not failed for it
    worker = [str(Path(sys.executable).with_name("dask")), "worker", cluster.address]
    replacement = subprocess.Popen(
        [*worker, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
        env={**os.environ, "PYTHONPATH": str(d.ROOT)},
        cwd=d.ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert isinstance(queued.receive(wait=True), int)  # it ran there, once
        assert len(_started(tmp_path / "q")) == 1
    finally:
        os.killpg(replacement.pid, signal.SIGTERM)
        replacement.wait(timeout=30)


def test_throttled_jobs_left_when_the_scheduler_is_lost_fail_saying_so(
    cluster: LoopbackCluster, session: Session
) -> None:
    nap = asjob.as_job(time.sleep, kind=DaskKind(cluster.address), throttle_limit=1)
    jobs = [nap(30), nap(30), nap(30)]
    time.sleep(1)
    cluster.processes[0].kill()  # the scheduler
    assert asjob.wait_job(jobs, timeout=60) == jobs
    assert [job.state for job in jobs] == [JobState.Failed] * 3
    with pytest.raises(asjob.BackendUnavailableError, match="cannot reach the Dask scheduler"):
        jobs[2].receive()


def test_a_lost_scheduler_fails_the_running_job_and_refuses_new_ones(
    cluster: LoopbackCluster, session: Session, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    kind = DaskKind(cluster.address)
    job = asjob.start_job(d.note_start_and_sleep, str(started), 60, kind=kind)
    _started(started)

    cluster.processes[0].kill()  # the scheduler

    assert job.wait(timeout=30)
    assert job.state is JobState.Failed  # not Stopped: nobody stopped it
    with pytest.raises(asjob.WorkerLostError, match="was cancelled, not by a stop"):
        job.receive()
    with pytest.raises(asjob.BackendUnavailableError, match="cannot reach the Dask scheduler"):
        asjob.start_job(f.add, 1, 1, kind=kind)
    assert asjob.get_job() == [job]  # nothing recorded for the start refused


def test_jobs_go_on_through_a_scheduler_that_answers_again_after_a_stop_gave_up(
    cluster: LoopbackCluster, session: Session, tmp_path: Path
) -> None:
    kind = DaskKind(cluster.address)
    finishing = asjob.start_job(d.note_start_and_sleep, str(tmp_path / "a"), 4, kind=kind)
    stopped = asjob.start_job(d.note_start_and_sleep, str(tmp_path / "b"), 60, kind=kind)
    [finishing_pid], [stopped_pid] = _started(tmp_path / "a"), _started(tmp_path / "b")
    scheduler = cluster.processes[0].pid

    os.kill(scheduler, signal.SIGSTOP)
    with pytest.raises(asjob.BackendUnavailableError, match="cannot stop job 2"):
        stopped.stop()
    os.kill(scheduler, signal.SIGCONT)

    # The stop it gave up waiting for reached the scheduler once it answered.
    assert stopped.wait(timeout=30)
    assert stopped.state is JobState.Stopped and wait_gone(stopped_pid)
    assert asjob.start_job(f.add, 1, 1, kind=kind).receive(wait=True) == 2  # the same connection
    assert finishing.receive(wait=True) == finishing_pid  # reported through it, as it ended


def test_stopping_several_jobs_on_a_frozen_scheduler_tries_each_and_waits_once(
    cluster: LoopbackCluster, session: Session, tmp_path: Path
) -> None:
    jobs, pids = _sleeping(DaskKind(cluster.address), tmp_path, 2)
    scheduler = cluster.processes[0].pid
    os.kill(scheduler, signal.SIGSTOP)
    began = time.monotonic()
    try:
        with pytest.raises(asjob.BackendUnavailableError, match="cannot stop job 1"):
            asjob.stop_job(jobs)
        took = time.monotonic() - began
        assert [job.state for job in jobs] == [JobState.Stopping] * 2  # both were asked
    finally:
        os.kill(scheduler, signal.SIGCONT)
    assert took < 9, f"{took:.1f} s: one wait for the scheduler, not one per job"
    assert asjob.wait_job(jobs, timeout=30) == jobs  # the stops reach it once it answers
    assert [job.state for job in jobs] == [JobState.Stopped] * 2
    assert all(wait_gone(pid) for pid in pids)


def test_a_stop_from_another_process_on_a_frozen_scheduler_is_refused_not_recorded(
    cluster: LoopbackCluster, session: Session, store_path: Path, tmp_path: Path
) -> None:
    job = asjob.start_job(
        d.note_start_and_sleep, str(tmp_path / "s"), 60, kind=DaskKind(cluster.address)
    )
    [pid] = _started(tmp_path / "s")
    scheduler = cluster.processes[0].pid
    os.kill(scheduler, signal.SIGSTOP)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "asjob", "stop", str(job.id)],
            env={**os.environ, "ASJOB_STORE": str(store_path)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.kill(scheduler, signal.SIGCONT)
    assert done.returncode == 3, done.stderr
    assert f"cannot stop job {job.id}" in done.stderr and "Traceback" not in done.stderr
    assert job.state in (JobState.Stopping, JobState.Running)  # not recorded Stopped
    assert not wait_gone(pid, timeout=0.5)


def test_a_detached_start_on_a_frozen_scheduler_is_refused_in_seconds(
    cluster: LoopbackCluster, session: Session
) -> None:
    kind = DaskKind(cluster.address)
    assert asjob.start_job(f.add, 1, 1, kind=kind).receive(wait=True) == 2  # connected
    scheduler = cluster.processes[0].pid
    os.kill(scheduler, signal.SIGSTOP)
    began = time.monotonic()
    try:
        with pytest.raises(asjob.BackendUnavailableError, match="did not answer within 5 s"):
            asjob.start_job(f.add, 2, 2, kind=kind, detach=True)
    finally:
        os.kill(scheduler, signal.SIGCONT)
    assert time.monotonic() - began < 9


def test_a_scheduler_restarted_at_the_same_address_gets_a_new_connection(
    cluster: LoopbackCluster, session: Session, tmp_path: Path
) -> None:
    kind = DaskKind(cluster.address)
    assert asjob.start_job(f.add, 1, 1, kind=kind).receive(wait=True) == 2
    for process in reversed(cluster.processes):  # the worker, then the scheduler
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    dask = str(Path(sys.executable).with_name("dask"))
    port = cluster.address.rsplit(":", 1)[1]
    restarted = [
        subprocess.Popen(
            [dask, *args, "--host", "127.0.0.1", "--no-dashboard"],
            env={**os.environ, "PYTHONPATH": str(d.ROOT)},
            cwd=d.ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for args in (["scheduler", "--port", port], ["worker", cluster.address])
    ]
    try:
        [worker] = d.wait_for_workers(cluster.address, 1)
        job = asjob.start_job(d.note_start_and_sleep, str(tmp_path / "s"), 60, kind=kind)
        _started(tmp_path / "s")
        deadline = time.monotonic() + 10
        while job.location != worker:  # its reports reach this session
            assert time.monotonic() < deadline, job.location
            time.sleep(0.05)
        os.killpg(restarted[1].pid, signal.SIGKILL)  # and so does its worker's loss
        assert job.wait(timeout=30)
        with pytest.raises(asjob.WorkerLostError, match=f"worker {worker} left the cluster"):
            job.receive()
    finally:
        for process in reversed(restarted):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


_STOPS_ON_A_FROZEN_SCHEDULER = """
import os, signal, sys, time
import asjob
from asjob.kinds.dask import DaskKind
from tests import daskfuncs as d

address, scheduler, started = sys.argv[1], int(sys.argv[2]), sys.argv[3]
job = asjob.start_job(d.note_start_and_sleep, started, 60, kind=DaskKind(address))
while not (os.path.exists(started) and open(started).read()):
    time.sleep(0.02)
os.kill(scheduler, signal.SIGSTOP)
began = time.monotonic()
try:
    job.stop()
except asjob.BackendUnavailableError as exc:
    print(f"refused after {time.monotonic() - began:.0f} s: {exc}", flush=True)
print(job.state, flush=True)
"""


def test_a_stop_on_a_frozen_scheduler_gives_up_and_the_script_still_exits(
    cluster: LoopbackCluster, store_path: Path, tmp_path: Path
) -> None:
    environment = {
        **os.environ,
        "ASJOB_STORE": str(store_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(d.ROOT), os.environ.get("PYTHONPATH")])),
    }
    script = textwrap.dedent(_STOPS_ON_A_FROZEN_SCHEDULER)
    arguments = [cluster.address, str(cluster.processes[0].pid), str(tmp_path / "started")]
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        env=environment,
        cwd=d.ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
    )
    took = time.monotonic() - began
    assert done.returncode == 0, done.stderr
    refused, state = done.stdout.splitlines()
    assert refused.startswith("refused after 5 s: cannot stop job 1: the Dask scheduler")
    assert "did not answer within 5 s" in refused
    assert state == "Stopping"
    assert took < 60, f"the script took {took:.0f} s to end"
    assert "Traceback" not in done.stderr
    # At exit the session stops its jobs again: the scheduler is still frozen, said in a line.
    assert "could not stop this session's jobs at exit: cannot stop job 1" in done.stderr
