"""Receive-Job's machinery: from a job's unreceived stream records to what the caller gets.

A receive takes two steps, so that nothing leaves the store unless it reaches the caller::

    take     read the job's records without removing them and decode them. An output value is
             the live object when this session ran the job in a thread, else its stored copy,
             unpickled. A record that cannot be decoded here (its class is not importable)
             makes the receive raise an AsJobError naming the job and the cause, and the
             store is left as it was: a process that can decode it receives it later.
    claim    remove exactly the rows read, and keep of the take only the reads whose rows
             this call removed: of two receivers that read the same rows, each row goes to
             the one that removes it, so what one shows the other never does.
    deliver  re-emit the warnings read and hand foreign log records to the caller's loggers,
             then claim (neither for ``keep``), then return the result or raise the job's
             exception. Re-emitting comes first: a warning the caller's filters make an error
             raises before anything is claimed. (Two receivers of one job at once may both
             re-emit a record that only one of them claims.)

``receive_job`` takes every job it was given before it delivers any (see its docstring). The
``asjob receive`` command claims itself, between rendering what it will print and printing it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import records as r
from .errors import AsJobError, JobFailedError
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

    def all_reads(self) -> Iterator[Read]:
        """Its reads and, for a fan-out parent, its children's, job by job."""
        yield from self.reads
        for child in self.children:
            yield from child.all_reads()


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


def claim(session: Session, taken: Taken) -> Taken:
    """Remove the rows ``taken`` read (one atomic step per job) and return the part of it that
    this call removed: only those reads, a fan-out parent's children's likewise.

    Rows another receiver removed since they were read, or written since, are not in it. A
    take that holds an error (a record that cannot be decoded) raises it, removing nothing.
    """
    if taken.error is not None:
        raise taken.error
    if taken.record.output_mode == CHILDREN:
        return replace(taken, children=[claim(session, child) for child in taken.children])
    removed = session.store.remove_records(taken.job_id, [read.row.seq for read in taken.reads])
    mine = [read for read in taken.reads if read.row.seq in removed]
    for read in mine:
        if read.index is not None:
            session.live_outputs.pop((taken.job_id, read.index), None)
    return replace(taken, reads=mine)


def hand_on(taken: Taken) -> None:
    """Re-emit the warnings and log records ``taken`` read, in the caller (see replay)."""
    replay(read for read in taken.all_reads() if read.index is None)


def deliver(session: Session, taken: Taken, keep: bool, handed_on: bool = False) -> Any:
    """Hand ``taken``'s streams on (unless ``handed_on`` already) and claim what it read
    (neither for ``keep``), and return the job's result or raise its exception
    (``partial_output`` attached)."""
    if taken.error is not None:
        raise taken.error
    if not keep:
        # Handed on first: a warning the caller's filters turn into an exception ends the
        # receive there, and must not take the job's data with it (it stays, unclaimed).
        if not handed_on:
            hand_on(taken)
        taken = claim(session, taken)
    outputs = outputs_of(taken)
    failure = job_failure(taken)
    if failure is not None:
        raise _with_partial(raisable(failure, taken.job_id), outputs)
    return result_of(taken, outputs)


def raisable(failure: BaseException, job_id: int) -> BaseException:
    """A job's exception as receiving the job raises it: itself, unless it is not an
    ``Exception`` (``SystemExit``, ``KeyboardInterrupt``, ``asyncio.CancelledError``, ...).
    Raised in the caller, such an exception would end, interrupt or cancel the caller instead
    of telling it that the job failed (a ``sys.exit(1)`` in a job would end a CI step quietly,
    an ``except Exception`` around the receive would not see it). It comes back as the cause of
    a :class:`JobFailedError`; ``job.reason`` is still the exception itself."""
    if isinstance(failure, Exception):
        return failure
    type_name = f"{type(failure).__module__}.{type(failure).__qualname__}"
    if isinstance(failure, SystemExit):  # sys.exit(2), or sys.exit("message") (status 1)
        code = failure.code
        what = f"exited with status {code}" if isinstance(code, int) else f"exited: {code}"
    else:
        what = f"was ended by {type_name}" + (f": {failure}" if str(failure) else "")
    wrapped = JobFailedError(
        f"job {job_id} {what}",
        job_id,
        type_name=type_name,
        original_message=str(failure),
        traceback_text=str(failure.__cause__ or ""),
    )
    wrapped.__cause__ = failure
    return wrapped


def job_failure(taken: Taken) -> BaseException | None:
    """The exception receiving ``taken`` raises, rebuilt afresh without ``partial_output``: a
    Failed job's own; a Failed fan-out parent's first failed child's, in input order. ``None``
    for a job that does not raise (the ``error`` of a take is not the job's failure)."""
    record = taken.record
    if record.state is not JobState.Failed:
        return None
    if record.output_mode == CHILDREN:
        return next(filter(None, map(job_failure, taken.children)), None)
    assert record.reason is not None
    r.alias_main_module()  # an exception type defined in the caller's main script
    return decode_failure(record.reason, taken.job_id)


def _value(read: Read) -> Any:
    return read.value


def outputs_of(taken: Taken, value: Callable[[Read], Any] = _value) -> list[Any]:
    """What ``taken`` holds for the caller, in order: a job's output values, or a fan-out
    parent's children's results (``None`` for a child that raises). ``value`` gives the
    value of an output read (the command line passes its rendering of it)."""
    if taken.record.output_mode == CHILDREN:
        return [
            None if job_failure(child) is not None else result_of(child, outputs_of(child, value))
            for child in taken.children
        ]
    return [value(read) for read in taken.reads if read.index is not None]


def result_of(taken: Taken, outputs: list[Any]) -> Any:
    """The result of a job that did not raise, from its :func:`outputs_of`: a function job's
    value (``None`` once received), else the list."""
    if taken.record.output_mode in (GENERATOR, CHILDREN):
        return outputs
    return outputs[0] if outputs else None


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


def replay(reads: Iterable[Read]) -> None:
    """Hand drained warnings and foreign log records to the caller's warnings and logging,
    and show its information and errors. A warning the job wrote itself (``write_warning``)
    is a ``UserWarning`` from ``<job N>``."""
    for read in reads:
        record = read.value
        if not isinstance(record, r.StreamRecord):
            continue
        if record.source == "warnings":
            warnings.warn_explicit(
                record.message,
                _warning_category(record.category),
                record.filename or "<job>",
                record.lineno or 0,
            )
        elif read.row.stream == r.WARNING and record.source == "job":
            warnings.warn_explicit(record.message, UserWarning, f"<job {read.row.job_id}>", 0)
        elif record.log is not None:
            logger = logging.getLogger(record.source)
            if logger.isEnabledFor(record.level or logging.NOTSET):
                logger.handle(logging.makeLogRecord(record.log))
        elif read.row.stream in (r.INFORMATION, r.ERROR) and record.source in _SHOWN_SOURCES:
            _show(record, read.row.stream)


# Printed text, and the current_job() writers'. (A logging record's source is its logger's
# name: it reaches the caller's logging instead, and is not shown twice.)
_SHOWN_SOURCES = frozenset({"stdout", "stderr", "job"})


def _show(record: r.StreamRecord, stream: str) -> None:
    """What a job printed, or wrote with ``write_information``/``write_error``, shown as
    Receive-Job shows it: on the caller's stdout; what it printed on stderr, and its errors,
    on the caller's stderr. (Drained unseen, it would be lost: the store no longer has it.)"""
    shown_on = sys.stderr if stream == r.ERROR or record.source == "stderr" else sys.stdout
    shown_on.write(record.message + "\n")
