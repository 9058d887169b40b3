"""The ``dask`` kind on a real cluster: a ``dask scheduler`` and two ``dask worker`` processes
on 127.0.0.1, started once for this module (see tests/daskfuncs.py)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import asjob
from asjob import Job, JobState
from asjob.errors import RemoteTraceback
from asjob.kinds.dask import DaskKind
from asjob.kinds.dask import cluster as dask_cluster
from asjob.kinds.dask.backend import DaskBackend
from asjob.kinds.dask.loopback import LoopbackCluster, stop_loopback_cluster
from asjob.session import Session
from asjob.worker.dask_runner import FINAL_TO_CHANNEL_LIMIT
from tests import daskfuncs as d
from tests import jobfuncs as f

# The streams job warns on purpose; its warning is replayed in the caller on receive.
pytestmark = pytest.mark.filterwarnings("always::DeprecationWarning")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    running = d.start_cluster(tmp_path_factory.mktemp("dask"))
    yield running
    stop_loopback_cluster(running)


@pytest.fixture
def dask(cluster: LoopbackCluster, session: Session) -> DaskKind:
    """The kind, on the module's cluster, for a test with a fresh session and store."""
    return DaskKind(cluster.address)


def _workers(cluster: LoopbackCluster) -> set[str]:
    return set(d.wait_for_workers(cluster.address, 2))


def _wait_for(predicate: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _python(code: str, store: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ASJOB_STORE": str(store),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(d.ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=d.ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- results and failures ------------------------------------------------------------------------


def test_result_comes_back_from_a_worker(dask: DaskKind, cluster: LoopbackCluster) -> None:
    job = asjob.start_job(f.add, 2, 3, kind=dask)
    assert job.state is JobState.Running  # handed to the cluster
    assert job.receive(wait=True) == 5
    assert job.state is JobState.Completed and job.reason is None
    assert job.job_type_name == "RemoteJob" and job.kind == "dask"
    assert job.location in _workers(cluster)
    assert not job.has_more_data
    assert "RemoteJob" in asjob.format_jobs([job])


def test_a_result_too_large_for_the_inbox_comes_back_through_its_task(dask: DaskKind) -> None:
    size = FINAL_TO_CHANNEL_LIMIT + 1
    job = asjob.start_job(d.zeros, size, kind=dask)
    assert job.receive(wait=True) == bytes(size)
    assert job.state is JobState.Completed and not job.has_more_data


def test_the_original_exception_comes_back(dask: DaskKind) -> None:
    job = asjob.start_job(f.fail, "on the cluster", kind=dask)
    asjob.wait_job(job)
    assert job.state is JobState.Failed
    with pytest.raises(f.CustomError, match="on the cluster") as caught:
        job.receive()
    assert caught.value.code == 42
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "CustomError" in caught.value.__cause__.text
    with pytest.raises(f.CustomError):  # again on every receive
        job.receive()
    assert isinstance(job.reason, f.CustomError)


def test_a_failed_generator_keeps_its_partial_output(dask: DaskKind) -> None:
    job = asjob.start_job(f.count_then_fail, 3, kind=dask)
    with pytest.raises(ValueError, match="failed after 3") as caught:
        job.receive(wait=True)
    assert caught.value.partial_output == [0, 1, 2]  # type: ignore[attr-defined]


def test_what_cannot_be_sent_fails_at_the_call(dask: DaskKind) -> None:
    with pytest.raises(TypeError, match="argument 'value'"):
        asjob.start_job(f.identity, threading.Lock(), kind=dask)
    assert asjob.get_job() == []


def test_streams_come_back(dask: DaskKind, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    job = asjob.start_job(f.streams, kind=dask)
    asjob.wait_job(job)
    assert job.progress[0].percent == 50
    assert {"error text", "an error record"} <= {r.message for r in job.error}
    assert ("stdout", "printed text") in [(r.source, r.message) for r in job.information]
    caplog.clear()
    with pytest.warns(Warning) as caught:
        assert job.receive() == "streams done"
    shown = {(type(w.message), str(w.message)) for w in caught}
    assert {(DeprecationWarning, "a python warning"), (UserWarning, "warning text")} <= shown
    assert ("tests.jobfuncs", "ERROR", "an error record") in [
        (r.name, r.levelname, r.getMessage()) for r in caplog.records
    ]


# -- while it runs -------------------------------------------------------------------------------


def test_partial_output_streams_while_the_job_runs(dask: DaskKind, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = asjob.start_job(f.wait_for_file_then_yield, str(gate), [1, 2], [3], kind=dask)
    received: list[int] = []
    deadline = time.monotonic() + 10
    while len(received) < 2 and time.monotonic() < deadline:
        received += job.receive()
        time.sleep(0.02)
    assert received == [1, 2]
    assert job.state is JobState.Running
    gate.touch()
    assert job.receive(wait=True) == [3]
    assert job.state is JobState.Completed


def test_wait_any_and_timeout(dask: DaskKind) -> None:
    slow = asjob.start_job(f.sleep_then, 1.5, "slow", kind=dask)
    fast = asjob.start_job(f.sleep_then, 0.1, "fast", kind=dask)
    assert asjob.wait_job([slow, fast], any=True) == [fast]
    assert asjob.wait_job(slow, timeout=0.2) == []
    assert slow.state is JobState.Running
    assert asjob.wait_job([slow, fast]) == [slow, fast]
    assert asjob.receive_job([slow, fast]) == ["slow", "fast"]


def test_map_spreads_over_the_workers(cluster: LoopbackCluster, session: Session) -> None:
    ten_times = asjob.as_job(f.maybe_fail, kind=DaskKind(cluster.address))
    parent = ten_times.map(range(40))
    assert parent.receive(wait=True) == [x * 10 for x in range(40)]
    assert parent.state is JobState.Completed and parent.job_type_name == "RemoteJob"
    children = parent.child_jobs
    assert len(children) == 40 and all(c.state is JobState.Completed for c in children)
    assert {c.location for c in children} == _workers(cluster)


def test_the_context_travels_but_its_secret_stays_out_of_keys_logs_and_environments(
    dask: DaskKind, cluster: LoopbackCluster
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    job = asjob.start_job(d.context_secret, context=d.SecretContext(secret), kind=dask)
    assert job.receive(wait=True) == secret
    assert asjob.start_job(d.environment_has, secret, kind=dask).receive(wait=True) is False
    with d.client(cluster.address) as dask_client:
        assert not any(dask_client.run(d.environment_has, secret).values())
        keys = dask_client.run_on_scheduler(
            lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks]
        )
    assert not any(secret in key for key in keys)
    assert secret not in cluster.logs()
    assert secret not in job.command


def test_an_azure_credential_object_stays_out_of_the_dask_task(
    dask: DaskKind, session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("azure.mgmt.compute")
    from asjob.providers.azure import connect_azure

    from asjob.kinds.dask import packing
    from tests.providers.azure import azurefuncs as az

    secret = f"s3cr3t-{uuid.uuid4().hex}"
    packed: list[bytes] = []
    pack_call = packing.pack_call

    def keep_what_is_packed(call: Any) -> bytes:
        payload = pack_call(call)
        packed.append(payload)
        return payload

    monkeypatch.setattr(packing, "pack_call", keep_what_is_packed)
    az.isolate_contexts(tmp_path, monkeypatch)
    with az.emulator() as arm:
        az.point_identity_at(arm, monkeypatch)
        credential = az.SecretCredential(arm.identity_endpoint, secret)
        connect_azure(az.SUBSCRIPTION, credential=credential, base_url=arm.base_url)
        remote = asjob.start_job(az.token_requests_in_worker, kind=dask)
        local = asjob.start_job(az.credential_type_and_pid, 0)

        # The Dask worker is served by the token brokered into its task, a local worker gets
        # the credential object itself (through its private socket)...
        assert remote.receive(wait=True) == 0
        assert local.receive(wait=True)[0] == "SecretCredential"
        assert arm.token_requests == 1
        session.close()  # before the endpoint its workers talk to
    # ...and the task that crossed the network to the scheduler holds no secret.
    assert len(packed) == 1
    assert secret.encode() not in packed[0]


# -- stopping ------------------------------------------------------------------------------------


def test_stop_kills_the_job_process_but_not_the_worker(
    dask: DaskKind, cluster: LoopbackCluster, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    before = d.worker_pids(cluster.address)
    job = asjob.start_job(d.note_start_and_sleep, str(started), 60, kind=dask)
    _wait_for(lambda: _lines(started))
    [pid] = map(int, _lines(started))
    began = time.monotonic()
    job.stop()
    assert time.monotonic() - began < 5
    assert job.state is JobState.Stopped and job.reason is None
    assert _gone(pid)
    assert job.receive() is None
    assert d.worker_pids(cluster.address) == before  # the workers stayed up
    assert asjob.start_job(f.add, 1, 1, kind=dask).receive(wait=True) == 2


def test_stop_a_job_still_queued_on_the_cluster(dask: DaskKind, tmp_path: Path) -> None:
    started = tmp_path / "started"
    busy = [
        asjob.start_job(d.note_start_and_sleep, str(started), 60, kind=dask) for _ in range(4)
    ]  # every thread of both workers
    _wait_for(lambda: len(_lines(started)) == 4)
    queued = asjob.start_job(d.note_start_and_sleep, str(started), 60, kind=dask)
    began = time.monotonic()
    queued.stop()
    assert time.monotonic() - began < 5
    assert queued.state is JobState.Stopped
    asjob.stop_job(busy)
    assert all(j.state is JobState.Stopped for j in busy)
    time.sleep(0.3)
    assert len(_lines(started)) == 4  # the queued one never began
    assert all(_gone(int(pid)) for pid in _lines(started))


# -- other processes -----------------------------------------------------------------------------


def test_a_detached_job_is_received_by_another_process(
    dask: DaskKind, cluster: LoopbackCluster, store_path: Path
) -> None:
    started = _python(
        f"""
        import asjob
        from asjob.kinds.dask import DaskKind
        from tests import jobfuncs
        job = asjob.start_job(jobfuncs.count, 4, 0.4, kind=DaskKind({cluster.address!r}),
                              detach=True)
        print(job.id)
    """,
        store_path,
    )
    assert started.returncode == 0, started.stderr
    [job] = asjob.get_job(id=int(started.stdout))
    assert job.state is JobState.Running  # its starter has exited
    assert job.receive(wait=True) == [0, 1, 2, 3]
    assert job.state is JobState.Completed
    assert job.location in _workers(cluster)
    with d.client(cluster.address) as dask_client:  # the result left the cluster once received
        _wait_for(lambda: not dask_client.list_datasets())


def test_a_detached_job_that_ended_while_nobody_watched_is_seen_ended_at_once(
    dask: DaskKind, cluster: LoopbackCluster, store_path: Path
) -> None:
    job = _detached_count_that_has_ended(cluster, store_path)
    # The first look collects the end: no stale Running, no empty first receive.
    assert asjob.wait_job(job, timeout=0) == [job]
    assert job.receive() == [0, 1, 2]


def test_a_detached_job_that_ended_while_nobody_watched_is_not_listed_as_running(
    dask: DaskKind, cluster: LoopbackCluster, store_path: Path
) -> None:
    job = _detached_count_that_has_ended(cluster, store_path)
    # As `asjob get --state Running` asks, in a later step of a pipeline.
    assert asjob.get_job(state="Running", all_sessions=True) == []
    assert asjob.get_job(state="Completed", all_sessions=True) == [job]


def _detached_count_that_has_ended(cluster: LoopbackCluster, store_path: Path) -> Job[Any]:
    """A job counting to 3, started detached by a process that has exited, once it has ended
    on the cluster (nobody has looked at it since its start)."""
    job = _detached_count(cluster, store_path)
    with d.client(cluster.address) as dask_client:
        [name] = dask_client.list_datasets()
        # One future, held: a report of its end reaches only a future that exists by then.
        dask_client.get_dataset(name).result(timeout=20)
    return job


def _detached_count(cluster: LoopbackCluster, store_path: Path) -> Job[Any]:
    """A job counting to 3, started detached by a process that has exited since, at once: an
    exit that took its time could see the job end and collect it (as it should). It counts
    for a second: on a loaded machine, a job that ends at once can end before its starter has
    exited, which then collects it, or dies as it tidies up after it."""
    started = _python(
        f"""
        import os
        import asjob
        from asjob.kinds.dask import DaskKind
        from tests import jobfuncs
        print(asjob.start_job(jobfuncs.count, 3, 0.3, kind=DaskKind({cluster.address!r}),
                              detach=True).id, flush=True)
        os._exit(0)
    """,
        store_path,
    )
    assert started.returncode == 0, started.stderr
    [job] = asjob.get_job(id=int(started.stdout))
    return job


def test_an_ending_session_stops_its_jobs_on_the_cluster(
    cluster: LoopbackCluster, store_path: Path, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    result = _python(
        f"""
        import time
        import asjob
        from asjob.kinds.dask import DaskKind
        from tests import daskfuncs
        job = asjob.start_job(daskfuncs.note_start_and_sleep, {str(started)!r}, 60,
                              kind=DaskKind({cluster.address!r}))
        while not job.location.startswith("tcp://") or job.location == {cluster.address!r}:
            time.sleep(0.01)
        print(job.id)
    """,
        store_path,
    )
    assert result.returncode == 0, result.stderr
    [pid] = map(int, _lines(started))
    _wait_for(lambda: _gone(pid))
    store = asjob.SQLiteStore(store_path)
    assert store.get_job(int(result.stdout)).state is JobState.Stopped


def test_a_job_is_stopped_from_another_process(
    dask: DaskKind, cluster: LoopbackCluster, store_path: Path, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    job = asjob.start_job(d.note_start_and_sleep, str(started), 60, kind=dask)
    _wait_for(lambda: _lines(started))
    [pid] = map(int, _lines(started))
    result = _python(f"import asjob; asjob.stop_job({job.id})", store_path)
    assert result.returncode == 0, result.stderr
    assert _gone(pid)
    assert asjob.wait_job(job, timeout=10) == [job]
    assert job.state is JobState.Stopped


def test_a_job_with_provider_resume_data_can_still_be_stopped_from_another_process(
    dask: DaskKind, cluster: LoopbackCluster, store_path: Path
) -> None:
    provided = json.dumps({"provider": "example", "continuation_token": "t"})
    job = asjob.start_job(d.record_resume_data_and_sleep, provided, 60, kind=dask)
    store = asjob.SQLiteStore(store_path)
    _wait_for(lambda: "continuation_token" in (store.get_job(job.id).resume_data or ""))
    assert json.loads(store.get_job(job.id).resume_data or "")["provider"] == "example"
    result = _python(f"import asjob; asjob.stop_job({job.id})", store_path)
    assert result.returncode == 0, result.stderr
    assert asjob.wait_job(job, timeout=10) == [job]
    assert job.state is JobState.Stopped


def test_a_crashed_session_leaves_no_job_running(
    cluster: LoopbackCluster, store_path: Path, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    result = _python(
        f"""
        import os, time
        import asjob
        from asjob.kinds.dask import DaskKind
        from tests import daskfuncs
        asjob.start_job(daskfuncs.note_start_and_sleep, {str(started)!r}, 60,
                        kind=DaskKind({cluster.address!r}))
        while not os.path.exists({str(started)!r}):
            time.sleep(0.01)
        os.kill(os.getpid(), 9)  # no exit handlers: the cluster sees its client vanish
    """,
        store_path,
    )
    assert result.returncode == -9
    [pid] = map(int, _lines(started))
    _wait_for(lambda: _gone(pid))


# -- configuration -------------------------------------------------------------------------------


def test_kind_dask_takes_the_scheduler_from_the_environment(
    cluster: LoopbackCluster, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASJOB_DASK_SCHEDULER", cluster.address)
    assert asjob.start_job(f.add, 20, 22, kind="dask").receive(wait=True) == 42
    monkeypatch.delenv("ASJOB_DASK_SCHEDULER")
    with pytest.raises(ValueError, match="ASJOB_DASK_SCHEDULER"):
        asjob.start_job(f.add, 1, 2, kind=DaskKind())


def test_without_the_dask_extra_the_error_says_what_to_install(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(asjob.BackendUnavailableError, match=r"pip install 'asjob\[dask\]'"):
        asjob.start_job(f.add, 1, 2, kind="dask")
    with pytest.raises(asjob.BackendUnavailableError, match="distributed"):
        DaskKind("tcp://127.0.0.1:8786")
    assert asjob.get_job() == []


def _leftovers(dask_scheduler: Any) -> list[str]:
    """What jobs use on the scheduler while they run: claims, published tasks, queues."""
    extensions = dask_scheduler.extensions
    return [
        *(f"claim {name}" for name, holders in extensions["multi_locks"].locks.items() if holders),
        *(f"dataset {name}" for name in extensions["publish"].datasets),
        *(
            f"queue {name}"
            for name in extensions["queues"].queues
            if str(name).startswith("asjob-job-")
        ),
    ]


def _left_on(cluster: LoopbackCluster, naming: str = "", seconds: float = 10) -> list[str]:
    """The leftovers on ``cluster`` (those whose names contain ``naming``) once they are gone,
    or after ``seconds`` if they stay."""

    def left() -> list[str]:
        return [x for x in dask_client.run_on_scheduler(_leftovers) if naming in x]

    with d.client(cluster.address) as dask_client:
        deadline = time.monotonic() + seconds
        while (found := left()) and time.monotonic() < deadline:
            time.sleep(0.05)
    return found


def test_a_session_closed_as_its_adopted_job_ends_still_tidies_the_cluster(
    dask: DaskKind,
    cluster: LoopbackCluster,
    session: Session,
    store_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session may close (its script exits) right after the job's end was recorded, while
    the job's claim, published task and queue are still being removed from the scheduler."""
    job = _detached_count(cluster, store_path)
    tidy_up = DaskBackend._clean_up

    def slow_tidy_up(backend: DaskBackend, watch: Any) -> None:
        time.sleep(0.5)  # a loaded machine: the session closes meanwhile
        tidy_up(backend, watch)

    monkeypatch.setattr(DaskBackend, "_clean_up", slow_tidy_up)
    assert job.receive(wait=True) == [0, 1, 2]
    session.close()
    assert _left_on(cluster, naming=job.instance_id.hex) == []


def test_nothing_is_left_on_the_cluster(cluster: LoopbackCluster) -> None:
    """What earlier tests' jobs used on the scheduler is gone once they have ended."""
    assert _left_on(cluster) == []


# -- a worker dies (last: the nanny restarts it, which takes a moment) ---------------------------


def test_a_worker_that_dies_fails_its_job_which_is_not_run_again(
    dask: DaskKind, cluster: LoopbackCluster, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    job = asjob.start_job(d.note_start_and_sleep, str(started), 60, kind=dask)
    _wait_for(lambda: _lines(started) and job.location != cluster.address)
    [pid] = map(int, _lines(started))
    os.kill(d.worker_pids(cluster.address)[job.location], 9)
    assert asjob.wait_job(job, timeout=60) == [job]
    assert job.state is JobState.Failed
    with pytest.raises(asjob.WorkerLostError, match="was lost") as caught:
        job.receive()
    assert caught.value.job_id == job.id
    _wait_for(lambda: _gone(pid))  # the job's process went with its worker
    time.sleep(0.5)
    assert len(_lines(started)) == 1  # Dask's re-run did not run the call again
    d.wait_for_workers(cluster.address, 2)  # the nanny brought the worker back


def test_a_scheduler_that_never_answers_fails_the_start(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A frozen scheduler, or another program on its port, accepts connections and stays
    # silent: distributed's Client would wait for its handshake forever.
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT_S", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(asjob.BackendUnavailableError, match="gave no answer within 1 s"):
            asjob.start_job(f.add, 1, 2, kind=DaskKind(address))
    assert session.store.list_jobs() == []
