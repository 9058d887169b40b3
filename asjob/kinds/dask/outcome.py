"""Applying what a ``dask`` job reports to the store, which stays the truth.

Interim batches (stream records, output items, the worker's address) are written as they come.
The final batch is written in one compare-and-set: its records, fields and the end state
together. So when two sessions race to apply it (a detached job's starter and a later process),
exactly one does, and a job stopped meanwhile ends Stopped keeping what it produced.
"""

from __future__ import annotations

from typing import Any

from ...errors import WorkerLostError
from ...failures import encode_failure
from ...states import JobState, transition
from ...store.base import MUTABLE_FIELDS, Store
from ...worker.dask_protocol import (
    EXITED,
    HOLD,
    NOT_RUN,
    OUTCOME,
    RECORDS,
    STARTED,
    STOPPED,
    UPDATE,
    Message,
)
from ...worker.forking import describe_exit
from . import routing


def _settable(store: Store, job_id: int, fields: dict[str, Any]) -> dict[str, Any]:
    """What a job's process may change about its record: never its state or identity, and
    its provider's resume data only alongside the job's routing."""
    settable = {k: v for k, v in fields.items() if k in MUTABLE_FIELDS}
    if "resume_data" in settable:
        current = store.get_job(job_id).resume_data
        settable["resume_data"] = routing.merged(current, settable["resume_data"])
    return settable


def apply_interim(store: Store, job_id: int, messages: list[Message]) -> None:
    """Write an interim batch: records in order, and the job's fields as they change."""
    records: list[tuple[str, bytes]] = []
    for message in messages:
        tag = message[0]
        if tag == RECORDS:
            records.extend(message[1])
            continue
        if records:
            store.append_records(job_id, records)
            records = []
        if tag == UPDATE:
            store.update(job_id, **_settable(store, job_id, message[1]))
        elif tag == HOLD:
            store.hold(message[1], message[2])
        elif tag == STARTED:
            store.update(job_id, location=message[1])
    if records:
        store.append_records(job_id, records)


def settle(store: Store, job_id: int, messages: list[Message], scheduler: str) -> None:
    """Write the final batch and the state the job ended in (``scheduler``: the cluster's
    address, which is the job's location until a worker reports it has begun)."""
    records: list[tuple[str, bytes]] = []
    fields: dict[str, Any] = {}
    ending: tuple[JobState, dict[str, Any]] | None = None
    pid: int | None = None
    for message in messages:
        tag = message[0]
        if tag == RECORDS:
            records.extend(message[1])
        elif tag == UPDATE:
            fields.update(_settable(store, job_id, message[1]))
        elif tag == HOLD:
            store.hold(message[1], message[2])
        elif tag == STARTED:
            fields["location"], pid = message[1], message[2]
        elif tag == OUTCOME:
            ending = JobState(message[1]), _settable(store, job_id, message[2])
            records.extend(message[3])
        elif tag == NOT_RUN and ending is None:
            ending = _not_run(store, job_id, message[1], scheduler)
        elif tag == EXITED and ending is None:
            pid = message[1] if pid is None else pid
            ending = JobState.Failed, {"reason": encode_failure(_died(job_id, pid, message[2]))}
    if ending is None:
        ending = (
            JobState.Failed,
            {
                "reason": encode_failure(
                    WorkerLostError(
                        f"job {job_id}: its Dask task ended without reporting an outcome", job_id
                    )
                )
            },
        )
    _finish(store, job_id, ending[0], records, {**fields, **ending[1]})


def settle_failure(store: Store, job_id: int, reason: bytes) -> None:
    """The Dask task itself failed (asjob missing on the worker, the worker lost repeatedly)."""
    _finish(store, job_id, JobState.Failed, [], {"reason": reason})


def settle_cancelled(store: Store, job_id: int) -> None:
    """The task was cancelled before it reported: the job was stopped."""
    _finish(store, job_id, JobState.Stopped, [], {})


def _finish(
    store: Store,
    job_id: int,
    target: JobState,
    records: list[tuple[str, bytes]],
    fields: dict[str, Any],
) -> None:
    if transition(store, job_id, target, records=records, **fields):
        return
    if store.get_job(job_id).state is JobState.Stopping:
        # A stop was under way: the job ends Stopped, with what it produced before.
        fields.pop("reason", None)
        transition(store, job_id, JobState.Stopped, records=records, **fields)


def _not_run(
    store: Store, job_id: int, why: str, scheduler: str
) -> tuple[JobState, dict[str, Any]]:
    if why == STOPPED:
        return JobState.Stopped, {}
    where = store.get_job(job_id).location
    worker = "the Dask worker running it" + ("" if where == scheduler else f" ({where})")
    lost = WorkerLostError(
        f"job {job_id}: {worker} was lost, and with it the job's outcome (its run may have "
        "ended or not); Dask started the job again elsewhere, and asjob does not run a call "
        "twice (its first run may have had effects)",
        job_id,
    )
    return JobState.Failed, {"reason": encode_failure(lost)}


def _died(job_id: int, pid: int, status: int | None) -> WorkerLostError:
    if status is None:
        text = f"job {job_id}: its process {pid} on the Dask worker ended without an outcome"
    else:
        text = (
            f"job {job_id}: its process on the Dask worker, "
            f"{describe_exit(pid, status)} without reporting an outcome"
        )
    return WorkerLostError(text, job_id)
