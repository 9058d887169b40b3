"""The in-memory store: the public fake for code built on asjob, with the thread kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import asjob
from asjob.session import Session
from tests import jobfuncs as f


@pytest.fixture
def memory_session() -> Iterator[Session]:
    session = asjob.use_store(asjob.MemoryStore())
    yield session
    session.close()


def test_thread_jobs_run_on_the_memory_store(memory_session: Session) -> None:
    job = asjob.start_job(f.add, 2, 2, kind="thread")
    assert job.receive(wait=True) == 4
    parent = asjob.as_job(kind="thread")(f.maybe_fail).map([1, 2])
    assert parent.receive(wait=True) == [10, 20]
    assert asjob.get_job() == [job, parent]


def test_thread_results_are_the_live_objects(memory_session: Session) -> None:
    job = asjob.start_job(f.live_object, kind="thread")
    lock = job.receive(wait=True)
    assert lock.acquire(blocking=False)  # a real lock, not a copy or a placeholder


def test_the_process_kind_needs_a_shared_store(memory_session: Session) -> None:
    with pytest.raises(asjob.BackendUnavailableError, match="kind='thread'"):
        asjob.start_job(f.add, 1, 1)
    assert asjob.get_job(include_child_job=True) == []
