"""What only the process kind does: real worker processes, killed, crashed, and cleaned up."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

import asjob
from asjob import JobState
from asjob.session import Session
from tests import jobfuncs as f
from tests.conftest import pid_alive


def _read_pid(path: Path) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"{path} was never written")


def _wait_gone(pid: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.01)
    return False


def test_each_job_runs_in_its_own_process(session: Session) -> None:
    pids = [asjob.start_job(os.getpid) for _ in range(3)]
    values = asjob.receive_job(pids, wait=True)
    assert len(set(values)) == 3 and os.getpid() not in values


def test_sigkilled_worker_fails_the_job_naming_the_signal(session: Session, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    victim = asjob.start_job(f.write_pid_and_sleep, str(pid_file))
    bystander = asjob.start_job(f.sleep_then, 1, "fine")
    os.kill(_read_pid(pid_file), signal.SIGKILL)
    asjob.wait_job(victim, timeout=10)
    assert victim.state is JobState.Failed
    with pytest.raises(asjob.WorkerLostError, match=r"signal 9 \(SIGKILL\)") as caught:
        victim.receive()
    assert caught.value.job_id == victim.id
    assert bystander.receive(wait=True) == "fine"


def test_a_lost_fork_server_takes_its_running_workers_with_it(
    session: Session, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    job = asjob.start_job(f.write_pid_and_sleep, str(pid_file))
    worker = psutil.Process(_read_pid(pid_file))
    worker.parent().kill()  # the fork server
    asjob.wait_job(job, timeout=10)
    assert job.state is JobState.Failed
    assert _wait_gone(worker.pid), "the worker outlived its fork server"
    with pytest.raises(asjob.WorkerLostError, match="fork server ended"):
        job.receive()


@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [
        (f.hard_exit, (3,), "exited with code 3"),
        (f.hard_exit, (0,), "exited with code 0"),
        (f.kill_self, (signal.SIGSEGV,), r"signal 11 \(SIGSEGV\)"),
    ],
)
def test_worker_that_dies_without_an_outcome(
    session: Session, fn: object, args: tuple[int], expected: str
) -> None:
    job = asjob.start_job(fn, *args)  # type: ignore[arg-type]
    asjob.wait_job(job, timeout=10)
    with pytest.raises(asjob.WorkerLostError, match=expected):
        job.receive()


def test_stop_kills_the_worker_and_the_processes_it_started(
    session: Session, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child"
    job = asjob.start_job(f.spawn_child_and_sleep, str(pid_file))
    grandchild = _read_pid(pid_file)
    worker = job._record().host_pid
    assert worker is not None
    started = time.monotonic()
    job.stop()
    assert time.monotonic() - started < 1.0
    assert job.state is JobState.Stopped
    assert _wait_gone(worker, 0.5)
    assert _wait_gone(grandchild, 2)


def test_a_killed_worker_takes_the_processes_it_started_with_it(
    session: Session, tmp_path: Path
) -> None:
    """As the kernel's OOM killer kills a worker: nothing stops the job, yet nothing of it
    stays running."""
    pid_file = tmp_path / "child"
    job = asjob.start_job(f.spawn_child_and_sleep, str(pid_file))
    grandchild = _read_pid(pid_file)
    worker = job._record().host_pid
    assert worker is not None
    os.kill(worker, signal.SIGKILL)
    asjob.wait_job(job, timeout=10)
    assert job.state is JobState.Failed
    assert _wait_gone(grandchild, 5), "a process the job started outlived its worker"


def test_stop_interrupts_a_blocking_network_call(session: Session) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        job = asjob.start_job(f.block_on_socket, server.getsockname()[1])
        time.sleep(0.2)
        started = time.monotonic()
        job.stop()
        assert time.monotonic() - started < 1.0
        assert job.state is JobState.Stopped
    finally:
        server.close()


def test_unpicklable_argument_fails_at_the_call(session: Session) -> None:
    before = asjob.get_job()
    with pytest.raises(TypeError, match=r"argument 'value' \(position 0\) of identity"):
        asjob.start_job(f.identity, f.Unpicklable())
    with pytest.raises(TypeError, match="argument 'value' of identity"):
        asjob.start_job(f.identity, value=f.Unpicklable())
    with pytest.raises(TypeError, match=r"the instance LockedService\.work is bound to"):
        asjob.start_job(f.LockedService().work)  # its state fails, not where it is defined
    assert asjob.get_job() == before


def test_a_closure_cannot_be_sent(session: Session) -> None:
    def inner() -> int:
        return 1

    with pytest.raises(TypeError, match=r"the function .*inner"):
        asjob.start_job(inner)
    with pytest.raises(TypeError, match="lambda"):
        asjob.start_job(lambda: 1)


def test_unpicklable_result_fails_the_job_clearly(session: Session) -> None:
    job = asjob.start_job(f.live_object)
    with pytest.raises(asjob.JobFailedError, match=r"result of live_object .* cannot be sent"):
        job.receive(wait=True)


@pytest.mark.parametrize("setting", ["bogus", "0", "-5", "inf", "nan"])
def test_a_rerun_limit_that_is_no_number_of_seconds_is_refused_naming_it(
    session: Session, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    monkeypatch.setenv("ASJOB_SCRIPT_RERUN_LIMIT", setting)
    with pytest.raises(ValueError, match=rf"\$ASJOB_SCRIPT_RERUN_LIMIT is '{setting}'"):
        asjob.start_job(f.add, 1, 2)
    assert asjob.get_job() == []  # nothing recorded
    monkeypatch.setenv("ASJOB_SCRIPT_RERUN_LIMIT", "2.5")
    assert asjob.start_job(f.add, 1, 2).receive(wait=True) == 3


def test_many_concurrent_jobs(session: Session) -> None:
    jobs = [asjob.start_job(f.sleep_then, 0.3, i) for i in range(30)]
    started = time.monotonic()
    assert asjob.receive_job(jobs, wait=True) == list(range(30))
    assert time.monotonic() - started < 10


_EXIT_SCRIPT = textwrap.dedent("""
    import sys, asjob
    from tests import jobfuncs as f
    if __name__ == "__main__":
        running = [asjob.start_job(f.write_pid_and_sleep, sys.argv[1] + str(i)) for i in range(3)]
        import time
        time.sleep(1.0)
        print("exiting", flush=True)
""")


def test_exiting_interpreter_stops_its_jobs(tmp_path: Path, store_path: Path) -> None:
    script = tmp_path / "starter.py"
    script.write_text(_EXIT_SCRIPT)
    prefix = str(tmp_path / "pid")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    done = subprocess.run(
        [sys.executable, str(script), prefix], env=env, timeout=60, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "exiting" in done.stdout
    pids = [_read_pid(Path(prefix + str(i))) for i in range(3)]
    assert all(_wait_gone(pid, 3) for pid in pids), [p for p in pids if pid_alive(p)]
    asjob.use_store(asjob.SQLiteStore(store_path))
    assert {j.state for j in asjob.get_job(all_sessions=True)} == {JobState.Stopped}


_RECEIVE_AND_REMOVE_SCRIPT = textwrap.dedent("""
    import asjob
    from tests import jobfuncs as f
    if __name__ == "__main__":
        for i in range(10):
            job = asjob.start_job(f.add, i, 1)
            assert job.receive(wait=True, auto_remove_job=i % 2 == 0) == i + 1
            if i % 2:
                job.remove()
""")


def test_a_job_removed_before_its_worker_has_exited_leaves_stderr_quiet(
    tmp_path: Path, store_path: Path
) -> None:
    script = tmp_path / "remover.py"
    script.write_text(_RECEIVE_AND_REMOVE_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    # The fork server shares the script's stderr, and the pipe ends only once it has exited.
    done = subprocess.run([sys.executable, str(script)], env=env, timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""


def test_interpreter_killed_outright_leaves_no_worker(tmp_path: Path, store_path: Path) -> None:
    script = tmp_path / "starter.py"
    script.write_text(_EXIT_SCRIPT.replace("time.sleep(1.0)", "time.sleep(60)"))
    prefix = str(tmp_path / "pid")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    starter = subprocess.Popen([sys.executable, str(script), prefix], env=env)
    try:
        pids = [_read_pid(Path(prefix + str(i))) for i in range(3)]
    finally:
        starter.kill()
        starter.wait(10)
    assert all(_wait_gone(pid, 5) for pid in pids)


def test_interpreter_killed_outright_leaves_no_process_its_jobs_started(
    tmp_path: Path, store_path: Path
) -> None:
    script = tmp_path / "starter.py"
    script.write_text(
        _EXIT_SCRIPT.replace("time.sleep(1.0)", "time.sleep(60)")
        .replace("f.write_pid_and_sleep", "f.spawn_escaping_child_and_sleep")
        .replace("range(3)", "range(1)")
    )
    pid_file = tmp_path / "pid0"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    starter = subprocess.Popen([sys.executable, str(script), str(tmp_path / "pid")], env=env)
    try:
        grandchild = _read_pid(pid_file)
    finally:
        starter.kill()
        starter.wait(10)
    try:
        assert _wait_gone(grandchild, 5), "a process a job started outlived the session"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(grandchild, signal.SIGKILL)


def test_what_the_callers_modules_print_on_import_is_not_repeated_by_the_fork_server(
    tmp_path: Path, store_path: Path
) -> None:
    (tmp_path / "noisy.py").write_text("print('noisy imported')\n\ndef one():\n    return 1\n")
    script = tmp_path / "starter.py"
    script.write_text(
        textwrap.dedent("""
            import asjob, noisy
            print("script loaded")
            if __name__ == "__main__":
                print(asjob.start_job(noisy.one).receive(wait=True))
        """)
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    done = subprocess.run(
        [sys.executable, str(script)], env=env, timeout=60, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["noisy imported", "script loaded", "1"]


@pytest.mark.parametrize("detach", [False, True])
def test_what_a_worker_writes_to_its_descriptors_is_the_jobs_information(
    session: Session, detach: bool
) -> None:
    job = asjob.start_job(f.write_to_descriptors, detach=detach)
    assert job.receive(wait=True, keep=True) == "done"
    info = [(r.source, r.message) for r in job.information]
    assert ("stdout", "from a command") in info
    assert ("stdout", "raw stdout") in info
    assert ("stderr", "raw stderr, unfinished \u00e9") in info


def test_a_module_from_a_path_added_after_the_first_job_reaches_the_workers(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert asjob.start_job(f.add, 1, 2).receive(wait=True) == 3  # the fork server is up
    (tmp_path / "added_late.py").write_text("def triple(x):\n    return 3 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import added_late  # type: ignore[import-not-found]

    assert asjob.start_job(added_late.triple, 14).receive(wait=True) == 42


def test_a_relative_sys_path_entry_is_the_callers(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert asjob.start_job(f.add, 1, 2).receive(wait=True) == 3  # the fork server is up
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "relative_lib.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("lib")  # relative to the caller's directory, not the server's
    import relative_lib  # type: ignore[import-not-found]

    assert asjob.start_job(relative_lib.double, 21).receive(wait=True) == 42
