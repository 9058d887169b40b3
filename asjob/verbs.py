"""The six PowerShell job verbs: Start-Job, Get-Job, Receive-Job, Wait-Job, Stop-Job, Remove-Job.

Every verb except ``start_job`` takes a :class:`~asjob.job.Job`, an ``int`` id, or a list of them.
"""

from __future__ import annotations

import fnmatch
import numbers
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from .call import Call
from .context import resolve_context
from .decorator import unwrap_job_function
from .errors import AsJobError, InvalidJobStateError, JobNotFinishedError, JobNotFoundError
from .job import Job
from .launching import check_start, start_call
from .receiving import deliver, hand_on, take
from .session import Session, current_session
from .states import JobState, transition
from .store.base import CHILDREN, JobRecord

T = TypeVar("T")
JobLike = Job[Any] | int
Jobs = JobLike | Sequence[JobLike]

# Jobs of other processes are polled in the store: soon at first (a short job is seen ending
# within milliseconds), then backing off to FOREIGN_POLL_S between reads.
FIRST_FOREIGN_POLL_S = 0.002
FOREIGN_POLL_S = 0.05


def _handles(jobs: Jobs, session: Session) -> tuple[list[Job[Any]], bool]:
    """The jobs as handles, and whether a single job (not a list) was given."""
    single = isinstance(jobs, (Job, int))
    items: Iterable[JobLike] = [jobs] if isinstance(jobs, (Job, int)) else jobs
    handles = []
    for item in items:
        if isinstance(item, Job):
            handles.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            handles.append(session.handle(session.store.get_job(item)))
        else:
            raise TypeError(f"expected a Job or a job id, not {type(item).__name__}: {item!r}")
    return handles, single


# -- Start-Job ---------------------------------------------------------------------------------


def start_job(
    fn: Callable[..., T],
    *args: Any,
    name: str | None = None,
    kind: Any = "process",
    context: Any = None,
    working_directory: str | os.PathLike[str] | None = None,
    init: Callable[[], Any] | None = None,
    detach: bool = False,
    **kwargs: Any,
) -> Job[T]:
    """Start ``fn(*args, **kwargs)`` as a background job and return at once.

    A ``process`` job is Running when this returns. ``init`` runs in the worker before ``fn``.
    ``detach=True`` lets the job outlive this interpreter; otherwise it is stopped at exit.
    The keywords named here are this function's, never ``fn``'s: to pass ``fn`` a keyword of
    the same name, call ``as_job(fn)(...)``, which passes every keyword through.
    """
    check_start(fn, kind, context, starter="start_job")
    fn = unwrap_job_function(fn)
    call = Call(fn, args, kwargs, init=init, context=resolve_context(context))
    return start_call(
        call, name=name, kind=kind, working_directory=working_directory, detach=detach
    )


# -- Get-Job -----------------------------------------------------------------------------------


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def _matches(value: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in patterns)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int, uuid.UUID, JobState)):
        return [value]
    return list(value)


def get_job(
    id: int | Sequence[int] | None = None,
    name: str | Sequence[str] | None = None,
    instance_id: uuid.UUID | str | Sequence[uuid.UUID | str] | None = None,
    state: JobState | str | Sequence[JobState | str] | None = None,
    command: str | Sequence[str] | None = None,
    has_more_data: bool | None = None,
    before: datetime | None = None,
    after: datetime | None = None,
    newest: int | None = None,
    include_child_job: bool = False,
    all_sessions: bool = False,
) -> list[Job[Any]]:
    """Jobs of this session (or of the whole store with ``all_sessions``), filtered, by id.

    Exact ids, instance ids and non-wildcard names that match nothing raise
    :class:`~asjob.errors.JobNotFoundError`; other filters that match nothing return ``[]``.
    """
    session = current_session()
    store = session.store
    ids, names = list(dict.fromkeys(_as_list(id))), _as_list(name)  # each job once
    instances = list(dict.fromkeys(uuid.UUID(str(i)) for i in _as_list(instance_id)))
    if ids:
        records = [store.get_job(i) for i in ids]
    elif instances:
        everything = store.list_jobs()
        records = []
        for wanted in instances:
            found = [rec for rec in everything if rec.instance_id == wanted]
            if not found:
                raise JobNotFoundError(f"no job with instance id {wanted}")
            records.extend(found)
    else:
        records = store.list_jobs(session_id=None if all_sessions else session.id)
        if not include_child_job:
            records = [rec for rec in records if rec.parent_id is None]
    if names:
        for literal in (n for n in names if not _is_pattern(n)):
            if not any(rec.name.lower() == literal.lower() for rec in records):
                raise JobNotFoundError(f"no job named {literal!r}")
        records = [rec for rec in records if _matches(rec.name, names)]
    ordered = sorted(records, key=lambda rec: rec.id)
    return _filter(
        session,
        [(session.handle(rec), rec) for rec in ordered],
        state=state,
        command=command,
        has_more_data=has_more_data,
        before=before,
        after=after,
        newest=newest,
    )


def _filter(
    session: Session,
    jobs: list[tuple[Job[Any], JobRecord]],
    *,
    state: Any,
    command: Any,
    has_more_data: bool | None,
    before: datetime | None,
    after: datetime | None,
    newest: int | None,
) -> list[Job[Any]]:
    states = {JobState.parse(s) for s in _as_list(state)}
    commands = _as_list(command)
    if not (states or commands or has_more_data is not None or before or after) and newest is None:
        return [job for job, _ in jobs]
    # The records just listed serve every filter; a job is read again only if it may be an
    # orphan (to settle it first) or has ended since (an adopted detached job, say).
    kept = [(job, job.current(rec)) for job, rec in jobs]
    if states:
        kept = [(j, r) for j, r in kept if r.state in states]
    if commands:
        kept = [(j, r) for j, r in kept if _matches(r.command, commands)]
    if has_more_data is not None:
        kept = [(j, r) for j, r in kept if j.has_more_data_in(r) == has_more_data]
    if before is not None or after is not None or newest is not None:
        kept = [
            (j, r)
            for j, r in kept
            if r.end_time is not None
            and (before is None or r.end_time < before.timestamp())
            and (after is None or r.end_time > after.timestamp())
        ]
        if newest is not None:
            by_end = sorted(kept, key=lambda pair: pair[1].end_time or 0.0)
            kept = sorted(by_end[-newest:] if newest > 0 else [], key=lambda pair: pair[0].id)
    return [j for j, _ in kept]


# -- Wait-Job ----------------------------------------------------------------------------------


def wait_job(jobs: Jobs, any: bool = False, timeout: float | None = None) -> list[Job[Any]]:
    """Wait until all jobs (or, with ``any``, one) have finished.

    Returns the jobs in input order (with ``any``, a one-element list: the first finished job in
    input order); ``[]`` if ``timeout`` seconds passed first (the jobs keep running).
    ``timeout=0`` polls.
    """
    if timeout is not None:
        if not isinstance(timeout, numbers.Real):
            raise TypeError(
                f"timeout must be a number of seconds or None, not {type(timeout).__name__}"
            )
        if not timeout >= 0:  # also NaN, which compares False with everything
            raise ValueError(f"timeout must be zero or more seconds, not {timeout}")
    session = current_session()
    handles, _ = _handles(jobs, session)
    if not handles:  # nothing to wait for (and with any, nothing that could end the wait)
        return []
    deadline = None if timeout is None else time.monotonic() + timeout
    poll = FIRST_FOREIGN_POLL_S
    while True:
        seen = session.generation
        finished = [j for j in handles if j.is_finished()]
        if any and finished:
            return [finished[0]]
        if not any and len(finished) == len(handles):
            return handles
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return []
        # From the same reading as `finished`: a job that ends in between must not make this
        # a wait for an in-session change that never comes.
        foreign = not all(session.is_live(j.id) for j in handles if j not in finished)
        pause = poll if foreign else 1.0
        poll = min(poll * 1.5, FOREIGN_POLL_S)
        session.wait_for_change(seen, pause if remaining is None else min(pause, remaining))


# -- Receive-Job -------------------------------------------------------------------------------


def receive_job(
    job: Jobs, keep: bool = False, wait: bool = False, auto_remove_job: bool = False
) -> Any:
    """What the job produced and has not been received yet (see the README for the rules).

    A Failed job raises its original exception (``partial_output`` attached) every time.
    Several jobs: a list of per-job results in the order given. When receiving one of them
    raises, the first such job in the order given raises and nothing of the others is
    received: their results and records stay for a later receive. ``auto_remove_job`` (which
    needs ``wait=True``) removes the jobs received, the Failed one that raised included.

    Nothing is removed from the store before it is decoded: a record that cannot be decoded
    in this process (a result whose class cannot be imported here) raises
    :class:`~asjob.errors.AsJobError` naming the job and the cause, and stays receivable, by a
    process that can import it. The same holds for every job of the call.
    """
    if auto_remove_job and not wait:
        raise ValueError("auto_remove_job=True needs wait=True")
    session = current_session()
    handles, single = _handles(job, session)
    if wait:
        wait_job(handles)
    # Everything is read and decoded before anything is removed, so a job that raises leaves
    # the others' data in the store instead of draining it into a result nobody gets.
    taken = [take(session, h) for h in handles]
    failing = next((t for t in taken if t.raises), None)
    if failing is not None:
        if not keep:  # outside the try: a warning made an error must not remove the job
            hand_on(failing)
        try:
            # Raises, having received nothing of the others.
            deliver(session, failing, keep, handed_on=True)
        finally:
            # The job's own failure has reached the caller: it is received. A record this
            # process could not decode has not, and stays for one that can.
            if auto_remove_job and failing.error is None:
                remove_job(handles[taken.index(failing)])
    if not keep:  # all first: a warning made an error leaves every job's data unclaimed
        for t in taken:
            hand_on(t)
    results = [deliver(session, t, keep, handed_on=True) for t in taken]
    if auto_remove_job:
        remove_job(handles)
    return results[0] if single else results


# -- Stop-Job ----------------------------------------------------------------------------------


def stop_job(jobs: Jobs, *, session: Session | None = None) -> None:
    """Stop jobs and return once their work has really stopped. Finished jobs are left alone."""
    session = session or current_session()
    handles, _ = _handles(jobs, session)
    # Queued jobs first: each running job stopped frees a throttle slot, which would start the
    # next queued job, one this call is about to stop, and its code would run meanwhile.
    for job in handles:
        _stop_if_queued(session, job)
    # Each job is tried, whatever the others do: one that cannot be stopped (its cluster
    # does not answer) must not leave the rest running. The first refusal is raised after.
    refusals: list[AsJobError] = []
    for job in handles:
        try:
            _stop(session, job)
        except AsJobError as exc:
            refusals.append(exc)
    if refusals:
        raise refusals[0]


def _stop_if_queued(session: Session, job: Job[Any]) -> None:
    """Stop ``job`` if it has not started (for a fan-out parent: its children that have not)."""
    record = job._record()
    if record.output_mode == CHILDREN and not record.finished:
        for child in job.child_jobs:
            _stop_if_queued(session, child)
    elif record.state is JobState.NotStarted:
        session.cancel_queued(job.id)
        if transition(session.store, job.id, JobState.Stopped):
            session.job_finished(job.id)


def _stop(session: Session, job: Job[Any]) -> None:
    store = session.store
    record = job._record()
    if record.finished:
        return
    if record.output_mode == CHILDREN:
        transition(store, job.id, JobState.Stopping)
        for child in job.child_jobs:
            _stop(session, child)
        transition(store, job.id, JobState.Stopped)  # no-op once the last child settled it
        return
    if record.state is JobState.NotStarted:
        _stop_if_queued(session, job)
        return
    if not transition(store, job.id, JobState.Stopping) and (
        store.get_job(job.id).state is not JobState.Stopping  # another stopper got there first
    ):
        return
    kind = session.kind(record.kind)
    kind.stop(store.get_job(job.id))
    transition(store, job.id, JobState.Stopped)
    session.job_finished(job.id)


# -- Remove-Job --------------------------------------------------------------------------------


def remove_job(jobs: Jobs, force: bool = False) -> None:
    """Remove finished jobs (and their child jobs) from the session and the store.

    A running job raises :class:`~asjob.errors.JobNotFinishedError` unless ``force``, which
    stops it first. Nothing is removed if any job given cannot be.
    """
    session = current_session()
    handles, _ = _handles(jobs, session)
    for job in handles:
        record = job._record()
        if record.parent_id is not None:
            raise InvalidJobStateError(
                f"job {job.id} is a child job of job {record.parent_id}: remove the parent",
                job.id,
            )
        if not record.finished and not force:
            raise JobNotFinishedError(
                f"job {job.id} is {record.state}: stop it first, or use force=True", job.id
            )
    stop_job([j for j in handles if not j.is_finished()], session=session)
    ids = [j.id for j in handles]
    children = [c.id for j in handles for c in j.child_jobs]
    session.store.delete_jobs(ids)
    session.forget(ids + children)
