"""The transition table, and every (state, verb) pair."""

from __future__ import annotations

import pytest

import asjob
from asjob import JobState
from asjob.session import Session
from asjob.states import ALLOWED_SOURCES, FINISHED, can_transition, transition
from asjob.store.base import NewJob

ALL = list(JobState)


def test_str_is_the_bare_powershell_name() -> None:
    assert str(JobState.Completed) == "Completed"
    assert f"{JobState.NotStarted}" == "NotStarted"
    assert {s.value for s in JobState} == {
        "NotStarted",
        "Running",
        "Completed",
        "Failed",
        "Stopped",
        "Blocked",
        "Suspended",
        "Disconnected",
        "Suspending",
        "Stopping",
        "AtBreakpoint",
    }


@pytest.mark.parametrize("finished", sorted(FINISHED))
@pytest.mark.parametrize("target", ALL)
def test_a_finished_job_never_changes_state(finished: JobState, target: JobState) -> None:
    assert not can_transition(finished, target)


def test_the_ordinary_life_of_a_job_is_allowed() -> None:
    for a, b in [
        (JobState.NotStarted, JobState.Running),
        (JobState.Running, JobState.Completed),
        (JobState.Running, JobState.Failed),
        (JobState.Running, JobState.Stopping),
        (JobState.Stopping, JobState.Stopped),
        (JobState.NotStarted, JobState.Stopped),
    ]:
        assert can_transition(a, b), (a, b)
    assert not can_transition(JobState.NotStarted, JobState.Completed)
    assert not can_transition(JobState.Stopping, JobState.Completed)


def _job_in(session: Session, state: JobState) -> asjob.Job[object]:
    """A job record forced into ``state`` (no worker behind it)."""
    store = session.store
    record = store.create_job(
        NewJob(
            name="", command="x()", job_type_name="ThreadJob", kind="thread", session_id=session.id
        )
    )
    if state is not JobState.NotStarted:
        assert store.compare_and_set_state(record.id, frozenset(ALL), state)
    return session.handle(store.get_job(record.id))


def test_transition_is_a_compare_and_set(session: Session) -> None:
    job = _job_in(session, JobState.Running)
    assert transition(session.store, job.id, JobState.Completed)
    assert not transition(session.store, job.id, JobState.Failed)
    assert job.state is JobState.Completed
    assert set(ALLOWED_SOURCES) == set(JobState)


@pytest.mark.parametrize("state", ALL)
def test_receive_in_every_state(session: Session, state: JobState) -> None:
    job = _job_in(session, state)
    if state is JobState.Failed:
        # A Failed record without a reason would be a bug; give it one.
        from asjob.failures import encode_failure

        session.store.update(job.id, reason=encode_failure(RuntimeError("why")))
        with pytest.raises(RuntimeError, match="why"):
            job.receive()
    else:
        assert job.receive() is None


@pytest.mark.parametrize("state", ALL)
def test_wait_with_zero_timeout_in_every_state(session: Session, state: JobState) -> None:
    job = _job_in(session, state)
    assert asjob.wait_job(job, timeout=0) == ([job] if state in FINISHED else [])


@pytest.mark.parametrize("state", ALL)
def test_stop_in_every_state(session: Session, state: JobState) -> None:
    job = _job_in(session, state)
    asjob.stop_job(job)
    assert job.state is (state if state in FINISHED else JobState.Stopped)


@pytest.mark.parametrize("state", ALL)
def test_remove_in_every_state(session: Session, state: JobState) -> None:
    job = _job_in(session, state)
    if state in FINISHED:
        asjob.remove_job(job)
        with pytest.raises(asjob.JobNotFoundError):
            asjob.get_job(id=job.id)
    else:
        with pytest.raises(asjob.JobNotFinishedError):
            asjob.remove_job(job)
        assert job.state is state
        asjob.remove_job(job, force=True)
        with pytest.raises(asjob.JobNotFoundError):
            asjob.get_job(id=job.id)
