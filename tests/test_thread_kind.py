"""What only the thread kind does, or refuses to do."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import asjob
from asjob import JobState
from asjob.session import Session
from tests import jobfuncs as f
from tests.conftest import new_job_thread


def test_a_thread_job_cannot_be_detached(session: Session) -> None:
    with pytest.raises(ValueError, match="thread job cannot be detached"):
        asjob.start_job(f.noop, kind="thread", detach=True)
    assert asjob.get_job() == []


_CALLER_LOGS_SCRIPT = """
import logging
import asjob
from tests import jobfuncs as f
logging.getLogger("app").warning("before the job")
asjob.start_job(f.noop, kind="thread").receive(wait=True)
logging.getLogger("app").error("after the job")
logging.getLogger("app").info("below the fallback's level")
"""


def test_a_thread_job_leaves_the_callers_unconfigured_logging_as_it_was(
    store_path: Path,
) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    done = subprocess.run(
        [sys.executable, "-c", _CALLER_LOGS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["before the job", "after the job"]


def test_an_abandoned_thread_job_removed_meanwhile_ends_quietly(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    unhandled: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: unhandled.append(args.exc_value))
    before = set(threading.enumerate())
    job = asjob.start_job(f.sleep_then, 0.3, kind="thread")
    thread = new_job_thread(before, job.id)
    asjob.remove_job(job, force=True)
    thread.join(10)
    assert not thread.is_alive()
    assert unhandled == []


def test_a_stop_from_another_process_raises_a_thread_jobs_stopping_flag(
    session: Session, store_path: Path
) -> None:
    before = set(threading.enumerate())
    job = asjob.start_job(f.cooperative, 60, kind="thread")
    thread = new_job_thread(before, job.id)
    stopped = subprocess.run(
        [sys.executable, "-m", "asjob", "stop", str(job.id)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert str(job.state) == "Stopped"
    thread.join(10)  # f.cooperative returns once it sees the flag
    assert not thread.is_alive()
    assert asjob.wait_job(job, timeout=0) == [job]


def test_a_result_that_can_be_neither_pickled_nor_shown_is_still_returned(
    session: Session,
) -> None:
    deep: list[object] = []
    for _ in range(5000):  # too deep for pickle, and for repr
        deep = [deep]
    job = asjob.start_job(f.identity, deep, kind="thread")
    assert job.receive(wait=True) is deep
    assert job.state is JobState.Completed


def test_a_wait_on_a_thread_job_removed_with_force_ends_at_once(session: Session) -> None:
    job = asjob.start_job(f.sleep_then, 60, "late", kind="thread")  # its thread is abandoned
    asjob.remove_job(job, force=True)
    with pytest.raises(asjob.JobNotFoundError):
        asjob.wait_job([job], timeout=5)  # not a wait for the thread, nor for the timeout


def test_a_stopped_and_removed_thread_job_leaves_nothing_in_the_session(session: Session) -> None:
    """Its abandoned thread returns later: what it returns, and the report of its end, must
    not stay in a long-lived session (nothing would ever take them back)."""
    before = set(threading.enumerate())
    job = asjob.start_job(f.sleep_then, 0.3, bytearray(1_000_000), kind="thread")
    thread = new_job_thread(before, job.id)
    job.stop()
    job.remove()
    thread.join(10)
    assert not thread.is_alive()
    assert session.live_outputs == {}


def test_the_ends_a_session_holds_are_those_of_jobs_a_kind_still_watches(
    session: Session,
) -> None:
    """A report of a job's end can come after its remove (a process job's worker exits after
    recording the outcome): a daemon that runs jobs for days must not keep every id."""
    running = asjob.start_job(f.sleep_then, 30, kind="thread")
    session.job_finished(running.id)  # watched: its report must stay until the kind lets go
    for ended in range(10_000, 13_000):  # ids no kind watches
        session.job_finished(ended)
    assert len(session._finished) <= 2 * 1024
    assert session.knows_finished(running.id)
    running.stop()
