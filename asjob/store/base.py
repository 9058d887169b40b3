"""The store contract: where the truth about jobs lives.

A store keeps job records (identity, state, times, failure reason, provider resume data) and
each job's stream records (output, errors, warnings, logs, progress) until they are received,
plus holds (a key held back until a time) that pace the jobs of every process.
Workers write to it, callers read from it, and other processes (a later CI step, the CLI)
find jobs in it by id. Implementations: :class:`~asjob.store.sqlite.SQLiteStore` (the default,
shared between processes) and :class:`~asjob.store.memory.MemoryStore` (one process, for tests).

Every state change is a compare-and-set (:meth:`Store.compare_and_set_state`), called only from
:func:`asjob.states.transition`. A finishing child job settles its parent in the same step, so
a fan-out parent finishes exactly when its last child does, whichever process that child ran in.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..states import FINISHED, JobState

SCHEMA_VERSION = 1

# How a job's output is shaped, which decides what receive returns.
VALUE = "value"  # one return value
GENERATOR = "generator"  # a list of the items yielded since the last receive
CHILDREN = "children"  # a fan-out parent: the children's results in input order


@dataclass(frozen=True)
class NewJob:
    """What a caller knows about a job before it starts."""

    name: str
    command: str
    job_type_name: str
    kind: str
    session_id: str
    output_mode: str = VALUE
    location: str = "localhost"
    parent_id: int | None = None
    position: int = 0
    detached: bool = False
    host_pid: int | None = None
    instance_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # A kind that runs the job as soon as it exists creates it Running, in one write.
    state: JobState = JobState.NotStarted
    host_started: float | None = None

    def __post_init__(self) -> None:
        if self.state not in (JobState.NotStarted, JobState.Running):
            raise ValueError(f"a new job is NotStarted or Running, not {self.state}")

    def record(self, job_id: int, created: float) -> JobRecord:
        """The record a store holds for this job once created as ``job_id`` at ``created``."""
        return JobRecord(
            id=job_id,
            instance_id=self.instance_id,
            name=self.name or f"Job{job_id}",
            command=self.command,
            job_type_name=self.job_type_name,
            kind=self.kind,
            location=self.location,
            state=self.state,
            session_id=self.session_id,
            parent_id=self.parent_id,
            position=self.position,
            output_mode=self.output_mode,
            detached=self.detached,
            host_pid=self.host_pid,
            host_started=self.host_started,
            created=created,
            begin_time=created if self.state is JobState.Running else None,
            end_time=None,
            reason=None,
            resume_data=None,
            unreceived=0,
        )


@dataclass(frozen=True)
class JobRecord:
    """One job as the store holds it. Times are POSIX timestamps."""

    id: int
    instance_id: uuid.UUID
    name: str
    command: str
    job_type_name: str
    kind: str
    location: str
    state: JobState
    session_id: str
    parent_id: int | None
    position: int
    output_mode: str
    detached: bool
    host_pid: int | None
    host_started: float | None
    created: float
    begin_time: float | None
    end_time: float | None
    reason: bytes | None
    resume_data: str | None
    unreceived: int

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def has_more_data(self) -> bool:
        """Data not yet received, or a job still running (more may come), as PowerShell shows it."""
        return self.unreceived > 0 or not self.finished


@dataclass(frozen=True)
class StreamRow:
    """One stream record: ``payload`` is what :mod:`asjob.records` encoded; ``seq`` is unique
    in the store and increases in the order records were appended."""

    job_id: int
    seq: int
    stream: str
    payload: bytes


# Fields a caller may set with a state change or an update.
MUTABLE_FIELDS = frozenset(
    {
        "host_pid",
        "host_started",
        "begin_time",
        "end_time",
        "reason",
        "resume_data",
        "location",
        "output_mode",
        "name",
        "job_type_name",
        "kind",
    }
)


class Store(Protocol):
    """What the core needs from a store. All methods are safe to call from several threads."""

    @property
    def path(self) -> str | None:
        """Where other processes open this store; ``None`` if it lives in this process only."""

    def create_job(self, new: NewJob) -> JobRecord:
        """Insert a NotStarted job with a fresh id (ids increase and are never reused)."""

    def get_job(self, job_id: int) -> JobRecord:
        """The job's record; raises :class:`~asjob.errors.JobNotFoundError` if there is none."""

    def list_jobs(
        self,
        *,
        session_id: str | None = None,
        parent_id: int | None = None,
        top_level: bool = False,
    ) -> list[JobRecord]:
        """Jobs sorted by id, optionally of one session, one parent, or top-level only."""

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        """The states of those of ``job_ids`` that exist, in one read."""

    def compare_and_set_state(
        self,
        job_id: int,
        sources: frozenset[JobState],
        target: JobState,
        *,
        records: Sequence[tuple[str, bytes]] = (),
        **fields: Any,
    ) -> bool:
        """Atomically: if the job's state is in ``sources``, set ``target``, the ``fields`` and
        append ``records``; settle the parent (see module doc). Returns whether it changed."""

    def update(self, job_id: int, **fields: Any) -> None:
        """Set fields that are not the state (see ``MUTABLE_FIELDS``)."""

    def append_records(self, job_id: int, records: Sequence[tuple[str, bytes]]) -> None:
        """Append stream records to a job, in order; none to a job no longer in the store."""

    def read_records(
        self,
        job_id: int,
        *,
        streams: Iterable[str] | None = None,
        remove: bool = False,
    ) -> list[StreamRow]:
        """The job's records not yet received, in order; ``remove`` drains them atomically.

        Receiving reads without ``remove`` and then takes the rows it could decode with
        :meth:`remove_records`, so a record that fails to decode is never lost.
        """

    def remove_records(self, job_id: int, seqs: Iterable[int]) -> set[int]:
        """Remove the job's records whose ``seq`` is in ``seqs``, in one atomic step, and
        return the seqs removed: those still there. Of two receivers that read the same rows,
        each row is removed by, and so belongs to, exactly one."""

    def delete_jobs(self, job_ids: Sequence[int]) -> None:
        """Remove jobs, their children and their records."""

    def hold(self, key: str, until: float) -> None:
        """Hold ``key`` back until ``until`` (a POSIX time), for every process of the store.

        A later ``until`` extends the hold; an earlier one leaves it. Providers use holds to pace
        all the jobs of a session, e.g. after a 429 from a cloud API that names a wait.
        """

    def held_until(self, key: str) -> float | None:
        """When the hold on ``key`` ends, or ``None`` if ``key`` is not held now."""


def now() -> float:
    return time.time()


def check_fields(fields: dict[str, Any]) -> None:
    unknown = set(fields) - MUTABLE_FIELDS
    if unknown:
        raise ValueError(f"not a settable job field: {', '.join(sorted(unknown))}")


def settled_parent_state(
    parent_state: JobState, child_states: Iterable[JobState]
) -> JobState | None:
    """The state a fan-out parent takes once its children are all finished, else ``None``."""
    states = list(child_states)
    if any(s not in FINISHED for s in states):
        return None
    if parent_state is JobState.Stopping:
        return JobState.Stopped
    if JobState.Failed in states:
        return JobState.Failed
    if JobState.Stopped in states:
        return JobState.Stopped
    return JobState.Completed
