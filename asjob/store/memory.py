"""A store that lives in this process only: the public fake for tests of code built on asjob.

It keeps the same contract as the SQLite store (ids never reused, compare-and-set states, parents
settled by their last child) but no other process can see it, so it serves the ``thread`` kind
only; the ``process`` kind needs a store its workers can open.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import JobNotFoundError
from ..states import JobState
from .base import JobRecord, NewJob, StreamRow, check_fields, now, settled_parent_state


class MemoryStore:
    """A :class:`~asjob.store.base.Store` in a dictionary, guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._jobs: dict[int, JobRecord] = {}
        self._records: list[StreamRow] = []
        self._ids = itertools.count(1)
        self._seqs = itertools.count(1)
        self._holds: dict[str, float] = {}

    @property
    def path(self) -> None:
        return None

    def _with_count(self, record: JobRecord) -> JobRecord:
        count = sum(1 for r in self._records if r.job_id == record.id)
        return dataclasses.replace(record, unreceived=count)

    def create_job(self, new: NewJob) -> JobRecord:
        with self._lock:
            job_id = next(self._ids)
            record = new.record(job_id, now())
            self._jobs[job_id] = record
            if new.parent_id is not None and new.state is JobState.Running:
                self._settle_parent(new.parent_id, new.state)
            return record

    def get_job(self, job_id: int) -> JobRecord:
        with self._lock:
            try:
                return self._with_count(self._jobs[job_id])
            except KeyError:
                raise JobNotFoundError(f"no job with id {job_id}", job_id) from None

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        with self._lock:
            return {i: self._jobs[i].state for i in job_ids if i in self._jobs}

    def list_jobs(
        self,
        *,
        session_id: str | None = None,
        parent_id: int | None = None,
        top_level: bool = False,
    ) -> list[JobRecord]:
        with self._lock:
            return [
                self._with_count(r)
                for _, r in sorted(self._jobs.items())
                if (session_id is None or r.session_id == session_id)
                and (parent_id is None or r.parent_id == parent_id)
                and not (top_level and r.parent_id is not None)
            ]

    def compare_and_set_state(
        self,
        job_id: int,
        sources: frozenset[JobState],
        target: JobState,
        *,
        records: Sequence[tuple[str, bytes]] = (),
        **fields: Any,
    ) -> bool:
        check_fields(fields)
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None or record.state not in sources:
                return False
            if target is JobState.Running and record.begin_time is None:
                fields.setdefault("begin_time", now())
            if target.finished:
                fields.setdefault("end_time", now())
            self._jobs[job_id] = dataclasses.replace(record, state=target, **fields)
            self.append_records(job_id, records)
            if record.parent_id is not None:
                self._settle_parent(record.parent_id, target)
            return True

    def _settle_parent(self, parent_id: int, child: JobState) -> None:
        parent = self._jobs[parent_id]
        if child is JobState.Running and parent.state is JobState.NotStarted:
            self._jobs[parent_id] = dataclasses.replace(
                parent, state=JobState.Running, begin_time=now()
            )
        elif child.finished and not parent.state.finished:
            states = (r.state for r in self._jobs.values() if r.parent_id == parent_id)
            settled = settled_parent_state(parent.state, states)
            if settled is not None:
                self._jobs[parent_id] = dataclasses.replace(parent, state=settled, end_time=now())

    def update(self, job_id: int, **fields: Any) -> None:
        check_fields(fields)
        with self._lock:
            if job_id in self._jobs:
                self._jobs[job_id] = dataclasses.replace(self._jobs[job_id], **fields)

    def append_records(self, job_id: int, records: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            if job_id not in self._jobs:
                return  # removed meanwhile: no record outlives its job
            self._records.extend(
                StreamRow(job_id, next(self._seqs), stream, payload) for stream, payload in records
            )

    def read_records(
        self,
        job_id: int,
        *,
        streams: Iterable[str] | None = None,
        remove: bool = False,
    ) -> list[StreamRow]:
        names = None if streams is None else set(streams)
        with self._lock:
            chosen = [
                r
                for r in self._records
                if r.job_id == job_id and (names is None or r.stream in names)
            ]
            if remove:
                taken = {id(r) for r in chosen}
                self._records = [r for r in self._records if id(r) not in taken]
            return chosen

    def remove_records(self, job_id: int, seqs: Iterable[int]) -> set[int]:
        wanted = set(seqs)
        with self._lock:
            removed = {r.seq for r in self._records if r.job_id == job_id and r.seq in wanted}
            if removed:
                self._records = [
                    r for r in self._records if r.job_id != job_id or r.seq not in removed
                ]
            return removed

    def delete_jobs(self, job_ids: Sequence[int]) -> None:
        with self._lock:
            doomed = set(job_ids)
            doomed |= {i for i, r in self._jobs.items() if r.parent_id in doomed}
            for job_id in doomed:
                self._jobs.pop(job_id, None)
            self._records = [r for r in self._records if r.job_id not in doomed]

    def hold(self, key: str, until: float) -> None:
        with self._lock:
            self._holds[key] = max(until, self._holds.get(key, until))

    def held_until(self, key: str) -> float | None:
        with self._lock:
            until = self._holds.get(key)
        return until if until is not None and until > now() else None
