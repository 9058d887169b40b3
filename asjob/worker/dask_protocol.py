"""What a ``dask`` job reports, from the process that runs it to the session that watches it.

::

    runner ══socket══► job process              ("job", RemoteCall), then ("go",) once claimed
                                                (it answers ("hello", pid) when it takes the job)
    job process ══socket══► runner (the Dask task) ══► the session watching the job
      ("records", [(stream, payload)])       interim batches, through a Dask Queue: seq 1..K
      ("update", {field: value})             the final batch: the task's result, with K (and,
                                             for a job that is not detached, first through the
                                             same queue as batch K+1, marked final)
      ("outcome", state, {fields}, [records])
      ("hold", key, until)                   a provider pacing the session's jobs
      ("modules", [names])                   (for the runner: what the fork server preloads)
                     the runner adds ("started", worker, pid, claim), ("exited", pid, status, claim)
                     or, when it did not run the call, ("not_run", STOPPED | LOST)

Messages are plain tuples; batches travel pickled, so Dask itself only ever carries bytes (and
never sees the call, its arguments or its context as objects it might log). Neither this module
nor the worker side imports :mod:`distributed` at import time.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

Message = tuple[Any, ...]

RECORDS = "records"
UPDATE = "update"
OUTCOME = "outcome"
HOLD = "hold"
MODULES = "modules"
JOB = "job"
GO = "go"
HELLO = "hello"
STARTED = "started"
EXITED = "exited"
NOT_RUN = "not_run"

# Why the runner did not run a call.
STOPPED = "stopped"  # a stop reached the worker before the job began
LOST = "lost"  # Dask re-ran the task after the worker running it died: never run a call twice


@dataclass(frozen=True)
class RemoteCall:
    """Everything the runner needs, packed by the session.

    ``channel`` is the Dask Queue for interim batches (the session's inbox, or the job's own
    queue for a detached job); ``claim`` the Dask MultiLock taken when the job begins.
    ``final_to_channel``: put the final batch in ``channel`` too, before the task returns. The
    session's inbox thread is already waiting on that queue, so the job is settled one hop
    after it ends, instead of after the scheduler has told the session the task finished and
    the session has fetched its result. (A detached job's result stays in its task, for
    whichever process receives it.)
    """

    job_id: int
    instance: str
    payload: bytes
    working_directory: str
    log_levels: dict[str, int]
    channel: str
    claim: str
    final_to_channel: bool = False


def task_key(instance: str) -> str:
    """The Dask key of a job's task: its instance id, never anything from the call."""
    return f"asjob-{instance}"


def claim_name(instance: str) -> str:
    return f"asjob-claim-{instance}"


def job_queue_name(instance: str) -> str:
    """A detached job's own queue (and the name its task is published under)."""
    return f"asjob-job-{instance}"


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def encode_batch(instance: str, seq: int, messages: list[Message], final: bool = False) -> bytes:
    return dumps((instance, seq, messages, final))


def decode_batch(data: bytes) -> tuple[str, int, list[Message], bool]:
    """A batch: its job's instance id, its sequence number, its messages, whether it is the
    job's final batch (the one with the outcome)."""
    instance, seq, messages, final = pickle.loads(data)
    return instance, seq, messages, final


def encode_result(batches_sent: int, messages: list[Message]) -> bytes:
    return dumps((batches_sent, messages))


def decode_result(data: bytes) -> tuple[int, list[Message]]:
    sent, messages = pickle.loads(data)
    return sent, messages
