"""Jobs across processes: sessions, detached jobs, and verbs on jobs another process started.

Each "other process" here is a real interpreter (``python -c``) on the same store file; the test
process plays the later CI step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import asjob
from asjob.errors import RemoteTraceback
from asjob.session import Session
from tests import jobfuncs_cli
from tests.cli_support import Cli, stop_leftovers, wait_for_file, wait_gone

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def other(store_path: Path, tmp_path: Path) -> Iterator[Cli]:
    """Runs snippets in other processes; the test's own session is on the same store."""
    runner = Cli(store_path, tmp_path)
    yield runner
    stop_leftovers(store_path)


def _started(other: Cli, code: str) -> list[int]:
    result = other.python(code)
    assert result.returncode == 0, result.stderr
    return [int(word) for word in result.stdout.split()]


def test_a_detached_job_outlives_its_starter_and_is_received_elsewhere(
    session: Session, other: Cli
) -> None:
    [job_id] = _started(
        other,
        """
        import asjob
        from tests import jobfuncs_cli
        job = asjob.start_job(jobfuncs_cli.sleep_then, 1.5, {"late": True}, detach=True)
        print(job.id)
    """,
    )
    [job] = asjob.get_job(id=job_id)
    assert job.state is asjob.JobState.Running  # the starter has exited; its job goes on
    assert asjob.get_job() == []  # another session's job
    assert asjob.get_job(all_sessions=True) == [job]
    assert job.receive(wait=True) == {"late": True}
    assert job.state is asjob.JobState.Completed and job.reason is None
    assert not job.has_more_data


def test_the_decorator_detaches_too(session: Session, other: Cli) -> None:
    [job_id] = _started(
        other,
        """
        import asjob
        from tests import jobfuncs_cli
        print(asjob.as_job(jobfuncs_cli.sleep_then, detach=True)(0.5, "decorated").id)
    """,
    )
    received = other.python(f"""
        import asjob
        print(asjob.receive_job({job_id}, wait=True))
    """)
    assert received.stdout == "decorated\n", received.stderr


def test_a_detached_fan_out_outlives_its_starter(session: Session, other: Cli) -> None:
    [parent_id] = _started(
        other,
        """
        import asjob
        from tests import jobfuncs_cli
        print(asjob.as_job(jobfuncs_cli.nap, detach=True).map([1.5, 1.0]).id)
    """,
    )
    [parent] = asjob.get_job(id=parent_id)
    # The parent has no process of its own: its starter's end is not its end.
    assert parent.state is asjob.JobState.Running
    assert parent.receive(wait=True) == [1.5, 1.0]
    assert parent.state is asjob.JobState.Completed


def test_non_detached_jobs_are_stopped_when_their_session_ends(
    session: Session, other: Cli, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    attached, detached = _started(
        other,
        f"""
        import asjob
        from tests import jobfuncs_cli
        a = asjob.start_job(jobfuncs_cli.pid_then_sleep, {str(pid_file)!r}, 60)
        d = asjob.start_job(jobfuncs_cli.sleep_then, 0.5, "kept", detach=True)
        while not __import__("os").path.exists({str(pid_file)!r}):
            pass
        print(a.id, d.id)
    """,
    )
    assert wait_gone(int(wait_for_file(pid_file)))
    assert asjob.get_job(id=attached)[0].state is asjob.JobState.Stopped
    assert asjob.receive_job(detached, wait=True) == "kept"


def test_a_failure_in_a_detached_job_is_raised_where_it_is_received(
    session: Session, other: Cli
) -> None:
    [job_id] = _started(
        other,
        """
        import asjob
        from tests import jobfuncs_cli
        print(asjob.start_job(jobfuncs_cli.fail, "far away", detach=True).id)
    """,
    )
    [job] = asjob.get_job(id=job_id)
    assert job.wait(timeout=20)
    with pytest.raises(ValueError, match="far away") as caught:
        job.receive()
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert isinstance(job.reason, ValueError)


def test_stop_from_another_process_kills_the_worker(
    session: Session, other: Cli, tmp_path: Path
) -> None:
    """The starter is alive and waiting on its job; this process stops it."""
    pid_file = tmp_path / "pid"
    starter = other.popen(f"""
        import asjob
        from tests import jobfuncs_cli
        job = asjob.start_job(jobfuncs_cli.pid_then_sleep, {str(pid_file)!r}, 60)
        print(job.id, flush=True)
        print(job.wait(timeout=30), job.state, flush=True)
    """)
    try:
        assert starter.stdout is not None
        job_id = int(starter.stdout.readline())
        pid = int(wait_for_file(pid_file))
        [job] = asjob.get_job(id=job_id)
        began = time.monotonic()
        asjob.stop_job(job)
        assert time.monotonic() - began < 2
        assert wait_gone(pid)
        assert job.state is asjob.JobState.Stopped and job.reason is None
        out, _ = starter.communicate(timeout=20)
        assert out.strip() == "True Stopped"  # the starter's own wait saw the stop
    finally:
        if starter.poll() is None:
            starter.kill()
        starter.communicate(timeout=10)


def test_remove_from_another_process(session: Session, other: Cli) -> None:
    [job_id] = _started(
        other,
        """
        import asjob
        from tests import jobfuncs_cli
        job = asjob.start_job(jobfuncs_cli.add, 1, 2, detach=True)
        job.wait(timeout=20)
        print(job.id)
    """,
    )
    asjob.remove_job(job_id)
    with pytest.raises(asjob.JobNotFoundError):
        asjob.get_job(id=job_id)
    again = other.python(f"import asjob; asjob.get_job(id={job_id})")
    assert "JobNotFoundError" in again.stderr


def test_ids_stay_unique_and_increasing_across_sessions(session: Session, other: Cli) -> None:
    mine = asjob.start_job(jobfuncs_cli.add, 1, 1, kind="thread")
    [theirs] = _started(
        other,
        """
        import asjob
        from tests import jobfuncs_cli
        job = asjob.start_job(jobfuncs_cli.noop, detach=True)
        print(job.id)
    """,
    )
    later = asjob.start_job(jobfuncs_cli.add, 2, 2, kind="thread")
    assert mine.id < theirs < later.id
    asjob.wait_job([mine, later], timeout=10)
    assert asjob.get_job() == [mine, later]
