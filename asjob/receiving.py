"""Receive-Job's machinery: from a job's unreceived stream records to what the caller gets.

A receive takes two steps, so that nothing leaves the store unless it reaches the caller::

    take     read the job's records without removing them and decode them. An output value is
             the live object when this session ran the job in a thread, else its stored copy,
             unpickled. A record that cannot be decoded here (its class is not importable)
             makes the receive raise an AsJobError naming the job and the cause, and the
             store is left as it was: a process that can decode it receives it later.
    deliver  remove exactly the rows read (of two receivers that read the same rows, each
             row goes to the one that removes it), re-emit drained warnings and hand foreign
             log records to the caller's loggers, each once (never for ``keep``), then return
             the result or raise the job's exception.

``receive_job`` takes every job it was given before it delivers any (see its docstring).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import records as r
from .errors import AsJobError
from .failures import decode_failure
from .states import JobState
from .store.base import CHILDREN, GENERATOR, JobRecord, StreamRow

if TYPE_CHECKING:
    from .job import Job
    from .session import Session

NON_OUTPUT = tuple(s for s in r.STREAMS if s != r.OUTPUT)
_NOT_LIVE: Any = object()


@dataclass(frozen=True)
class Read:
    """One stream row, decoded: ``value`` is the output value (``index`` its position in the
    job's output) or the stream record; ``index`` is ``None`` off the output stream."""

    row: StreamRow
    value: Any
    index: int | None = None


@dataclass
class Taken:
    """One job's unreceived records, read and decoded but still in the store.

    ``error`` is set instead when a record could not be decoded (for a fan-out parent: one of a
    child's); ``children`` are a fan-out parent's children, taken likewise.
    """

    job_id: int
    record: JobRecord
    reads: list[Read] = field(default_factory=list)
    children: list[Taken] = field(default_factory=list)
    error: AsJobError | None = None

    @property
    def raises(self) -> bool:
        """Whether delivering it raises: a record that cannot be decoded, or a Failed job
        (a Failed parent raises when one of its children does)."""
        if self.error is not None:
            return True
        if self.record.state is not JobState.Failed:
            return False
        if self.record.output_mode == CHILDREN:
            return any(child.raises for child in self.children)
        return True


def take(session: Session, job: Job[Any]) -> Taken:
    """Read and decode what receiving ``job`` would give, removing nothing."""
    record = job._record()
    if record.output_mode == CHILDREN:
        children = [take(session, child) for child in job.child_jobs]
        error = next((c.error for c in children if c.error is not None), None)
        return Taken(job.id, record, children=children, error=error)
    # A function job's value is received once it has finished; a generator's items as they come.
    takes_output = record.finished or record.output_mode == GENERATOR
    rows = session.store.read_records(job.id, streams=None if takes_output else NON_OUTPUT)
    try:
        reads = decode_rows(session, job.id, rows)
    except AsJobError as exc:
        return Taken(job.id, record, error=exc)
    return Taken(job.id, record, reads)


def decode_rows(session: Session, job_id: int, rows: Iterable[StreamRow]) -> list[Read]:
    """Decode stream rows of job ``job_id``; raises :class:`AsJobError` for one that cannot be
    decoded here. An output value this session holds live is never unpickled."""
    reads = []
    for row in rows:
        what = f"a {row.stream} record"
        try:
            decoded = r.decode(row.payload)
            if row.stream != r.OUTPUT:
                reads.append(Read(row, decoded))
                continue
            what = f"output value {decoded.index}"
            # One atomic lookup: another thread's receive may pop the live object meanwhile.
            value = session.live_outputs.get((job_id, decoded.index), _NOT_LIVE)
            if value is _NOT_LIVE:
                value = decoded.value  # only now unpickled: a live object never is
            reads.append(Read(row, value, decoded.index))
        except Exception as exc:
            raise AsJobError(
                f"job {job_id}: {what} cannot be decoded in this process "
                f"({type(exc).__name__}: {exc}); it stays in the job store, receivable "
                "by a process that can import what it needs",
                job_id,
            ) from exc
    return reads


def deliver(session: Session, taken: Taken, keep: bool) -> Any:
    """Remove what ``taken`` read (unless ``keep``), hand its streams on, and return the
    job's result or raise its exception (``partial_output`` attached)."""
    if taken.error is not None:
        raise taken.error
    result, failure = _drain(session, taken, keep)
    if failure is not None:
        raise failure
    return result


def _drain(session: Session, taken: Taken, keep: bool) -> tuple[Any, BaseException | None]:
    record = taken.record
    if record.output_mode == CHILDREN:
        return _drain_parent(session, taken, keep)
    reads = taken.reads if keep else _remove(session, taken)
    outputs = [read.value for read in reads if read.index is not None]
    if not keep:
        replay(read.value for read in reads if read.index is None)
    if record.state is JobState.Failed:
        assert record.reason is not None
        r.alias_main_module()  # an exception type defined in the caller's main script
        return None, _with_partial(decode_failure(record.reason, taken.job_id), outputs)
    if record.output_mode == GENERATOR:
        return outputs, None
    return (outputs[0] if outputs else None), None


def _drain_parent(session: Session, taken: Taken, keep: bool) -> tuple[Any, BaseException | None]:
    """A fan-out parent: its children's results in input order (``None`` for a child that
    failed); a Failed parent raises its first failed child's exception, holding them all."""
    results: list[Any] = []
    first_failure: BaseException | None = None
    for child in taken.children:
        result, failure = _drain(session, child, keep)
        results.append(result if failure is None else None)
        first_failure = first_failure or failure
    if taken.record.state is JobState.Failed and first_failure is not None:
        return None, _with_partial(first_failure, results)
    return results, None


def _remove(session: Session, taken: Taken) -> list[Read]:
    """Remove the rows ``taken`` read; the reads whose rows this call removed."""
    removed = session.store.remove_records(taken.job_id, [read.row.seq for read in taken.reads])
    mine = [read for read in taken.reads if read.row.seq in removed]
    for read in mine:
        if read.index is not None:
            session.live_outputs.pop((taken.job_id, read.index), None)
    return mine


def _with_partial(exc: BaseException, partial: list[Any]) -> BaseException:
    with contextlib.suppress(AttributeError):  # an exception type with __slots__
        exc.partial_output = partial  # type: ignore[attr-defined]
    return exc


def _warning_category(name: str | None) -> type[Warning]:
    if name:
        module, _, qualname = name.rpartition(".")
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            if isinstance(obj, type) and issubclass(obj, Warning):
                return obj
        except Exception:
            pass
    return UserWarning


def replay(records: Iterable[Any]) -> None:
    """Hand drained warnings and foreign log records to the caller's warnings and logging."""
    for record in records:
        if not isinstance(record, r.StreamRecord):
            continue
        if record.source == "warnings":
            warnings.warn_explicit(
                record.message,
                _warning_category(record.category),
                record.filename or "<job>",
                record.lineno or 0,
            )
        elif record.log is not None:
            logger = logging.getLogger(record.source)
            if logger.isEnabledFor(record.level or logging.NOTSET):
                logger.handle(logging.makeLogRecord(record.log))
