"""Threads a job starts belong to the job: in a worker process because the whole process is the
job's, in a thread job because the thread inherits the job (see asjob.job_threads)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import asjob
from asjob.session import Session
from tests import jobfuncs as f


def _messages(records: list[object]) -> list[str]:
    return [str(getattr(record, "message", record)) for record in records]


def test_what_a_thread_started_by_a_job_prints_and_logs_is_the_jobs(
    kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    job = asjob.start_job(f.speak_from_a_thread, "from a helper thread", kind=kind)
    assert asjob.wait_job(job, timeout=30) == [job]
    assert "from a helper thread" in _messages(job.information)
    assert "logged from a helper thread" in _messages(job.warning)
    assert "from a helper thread" not in capfd.readouterr().out  # captured, not shown
    assert job.receive() == job.id  # current_job() in that thread is the job's
    assert capfd.readouterr().out.count("from a helper thread") == 1  # shown when received


def test_a_shared_thread_pool_started_inside_a_thread_job_stays_the_callers(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    job = asjob.start_job(f.print_from_the_shared_pool, "pool text", kind="thread")
    assert job.receive(wait=True) == "submitted"
    # The pool runs whoever's tasks are submitted: its thread is not the job's.
    assert "pool text" not in _messages(job.information)
    assert "pool text" in capsys.readouterr().out


def test_a_thread_left_running_after_its_job_ended_writes_to_the_caller(
    session: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    go, done = tmp_path / "go", tmp_path / "done"
    job = asjob.start_job(
        f.leave_a_thread_printing, str(go), str(done), "after the end", kind="thread"
    )
    assert job.receive(wait=True) == "left"
    go.touch()
    deadline = time.monotonic() + 30
    while not done.exists():
        assert time.monotonic() < deadline, "the thread never printed"
        time.sleep(0.01)
    assert not job.has_more_data  # nothing was added to the finished job
    assert "after the end" in capsys.readouterr().out
