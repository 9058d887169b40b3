"""The :class:`Job` handle: identity, state, streams and outcome of one background call.

A handle holds no truth of its own: every read goes to the store (a finished state is cached,
since it never changes again). So a handle on a job another process started, or one obtained
with ``get_job(id=...)`` in a later CI step, behaves exactly like the starter's own.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import records as r
from .errors import JobNotFoundError, WorkerLostError
from .failures import decode_failure, encode_failure
from .states import JobState, transition
from .store.base import CHILDREN, JobRecord

if TYPE_CHECKING:
    from .session import Session

T = TypeVar("T")


def _time(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc)


class Job(Generic[T]):
    """A handle on one background job; ``receive()`` returns what the call returned (``T``)."""

    def __init__(self, session: Session, record: JobRecord) -> None:
        self._session = session
        self.id: int = record.id
        self.instance_id: uuid.UUID = record.instance_id
        self.command: str = record.command
        self._parent_id = record.parent_id
        self._final: JobRecord | None = record if record.finished else None

    def __repr__(self) -> str:
        try:  # the last record read, if the job has finished: a removed job has none to read
            record = self._final or self._session.store.get_job(self.id)
        except JobNotFoundError:
            return f"<Job {self.id} (removed)>"
        return f"<Job {self.id} {record.name!r} {record.state}>"

    # -- reading the record ------------------------------------------------------------------

    def _record(self) -> JobRecord:
        """The job's record now, with an orphaned job (its worker or session died without
        reporting) settled as Failed first."""
        return self.current(self._session.store.get_job(self.id))

    def current(self, record: JobRecord) -> JobRecord:
        """``record``, just read or listed, if it still says how the job stands; else the job's
        record now, an orphan settled as Failed first. Asking whether this session watches the
        job may adopt it (a detached remote job), which collects its end if it has ended."""
        session = self._session
        if not record.finished:
            if not session.is_live(self.id):
                record = _settle_orphan(session, record)
            elif session.knows_finished(self.id):  # it ended since the read
                record = session.store.get_job(self.id)
        if record.finished:
            self._final = record
        return record

    def is_finished(self) -> bool:
        """Cheap for jobs this session runs: no store read until the kind reports the end."""
        if self._final is not None:
            return True
        if self._session.is_live(self.id) and not self._session.knows_finished(self.id):
            return False
        return self._record().finished

    @property
    def is_child(self) -> bool:
        return self._parent_id is not None

    @property
    def name(self) -> str:
        return self._record().name

    @property
    def state(self) -> JobState:
        if self._final is not None:
            return self._final.state
        return self._record().state

    def record(self) -> JobRecord:
        """Everything the store holds on the job, in one read (each property reads it anew:
        take this when showing or filtering on several of them)."""
        return self._record()

    def has_more_data_in(self, record: JobRecord) -> bool:
        """``has_more_data`` as of ``record`` (a parent asks its children)."""
        if record.output_mode == CHILDREN:
            return any(child.has_more_data for child in self.child_jobs)
        return record.has_more_data

    @property
    def has_more_data(self) -> bool:
        return self.has_more_data_in(self._record())

    @property
    def location(self) -> str:
        return self._record().location

    @property
    def job_type_name(self) -> str:
        return self._record().job_type_name

    @property
    def kind(self) -> str:
        """Where the job runs now: ``thread`` once a process job has handed its wait to its
        session (see the README's Azure section)."""
        return self._record().kind

    @property
    def begin_time(self) -> datetime | None:
        return _time(self._record().begin_time)

    @property
    def end_time(self) -> datetime | None:
        return _time(self._record().end_time)

    @property
    def reason(self) -> BaseException | None:
        """Why the job failed (the rebuilt original exception), else ``None``."""
        record = self._record()
        if record.state is not JobState.Failed:
            return None
        if record.reason is not None:
            r.alias_main_module()  # an exception type defined in the caller's main script
            return decode_failure(record.reason, self.id)
        for child in self.child_jobs:
            reason = child.reason
            if reason is not None:
                return reason
        return None

    @property
    def child_jobs(self) -> list[Job[Any]]:
        return [
            self._session.handle(child)
            for child in sorted(
                self._session.store.list_jobs(parent_id=self.id), key=lambda c: c.position
            )
        ]

    # -- streams (records not yet received; reading them does not receive them) --------------

    def _peek(self, stream: str) -> list[Any]:
        """The stream's records (output values, for ``output``), left in the store. Raises
        :class:`~asjob.errors.AsJobError` for one that cannot be decoded here."""
        from .receiving import decode_rows

        rows = self._session.store.read_records(self.id, streams=[stream])
        return [read.value for read in decode_rows(self._session, self.id, rows)]

    @property
    def output(self) -> list[Any]:
        return self._peek(r.OUTPUT)

    @property
    def error(self) -> list[r.StreamRecord]:
        return self._peek(r.ERROR)

    @property
    def warning(self) -> list[r.StreamRecord]:
        return self._peek(r.WARNING)

    @property
    def verbose(self) -> list[r.StreamRecord]:
        return self._peek(r.VERBOSE)

    @property
    def debug(self) -> list[r.StreamRecord]:
        return self._peek(r.DEBUG)

    @property
    def information(self) -> list[r.StreamRecord]:
        return self._peek(r.INFORMATION)

    @property
    def progress(self) -> list[r.ProgressRecord]:
        return self._peek(r.PROGRESS)

    # -- the verbs as methods ----------------------------------------------------------------

    def receive(self, keep: bool = False, wait: bool = False, auto_remove_job: bool = False) -> T:
        from .verbs import receive_job

        result: T = receive_job(self, keep=keep, wait=wait, auto_remove_job=auto_remove_job)
        return result

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job to finish; ``False`` if ``timeout`` expired first."""
        from .verbs import wait_job

        return bool(wait_job([self], timeout=timeout))

    def stop(self) -> None:
        from .verbs import stop_job

        stop_job(self)

    def remove(self, force: bool = False) -> None:
        from .verbs import remove_job

        remove_job(self, force=force)


def _settle_orphan(session: Session, record: JobRecord) -> JobRecord:
    """A job whose host process (its worker, or the session running its thread) is gone
    without recording an outcome can never finish: record that it failed."""
    from .kinds.process import process_gone

    if record.output_mode == CHILDREN:
        # A fan-out parent has no process of its own (a detached one outlives its starter):
        # it settles with its children, so settle those that are orphans.
        for child in session.store.list_jobs(parent_id=record.id):
            if not child.finished and not session.is_live(child.id):
                _settle_orphan(session, child)
        return session.store.get_job(record.id)
    if record.host_pid is None or not process_gone(record.host_pid, record.host_started):
        return record
    if record.state is JobState.Stopping:
        transition(session.store, record.id, JobState.Stopped)
    else:
        lost = WorkerLostError(
            f"job {record.id}: its process {record.host_pid} ended without reporting an outcome",
            record.id,
        )
        transition(session.store, record.id, JobState.Failed, reason=encode_failure(lost))
    return session.store.get_job(record.id)
