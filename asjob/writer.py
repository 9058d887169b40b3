"""The writer a running job uses to talk to its streams: what ``current_job()`` returns.

Data flow::

    job code ── write_*(), print, logging, warnings.warn, yield ──► JobWriter ──► sink
                                                                   (line-buffers text,   (appends to
                                                                    drops after a stop)   the store)
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from . import records as r
from . import redaction

if TYPE_CHECKING:
    from .store.base import Store

Sink = Callable[[str, bytes], None]
"""Receives one encoded record: ``(stream name, payload)``."""

_current: ContextVar[JobWriter | None] = ContextVar("asjob_current_job", default=None)
# A worker process runs exactly one job: threads it starts belong to that job too, although
# they do not inherit the context variable.
_process_writer: JobWriter | None = None


class JobWriter:
    """Writes a running job's stream records. Thread-safe.

    ``live_outputs``, when given, receives every output value by index: a thread job's caller
    gets back the very objects the job produced, while the store keeps a pickled copy (or an
    :class:`~asjob.records.Unpicklable` placeholder) for other processes.
    """

    def __init__(
        self,
        job_id: int,
        sink: Sink,
        *,
        live_outputs: dict[tuple[int, int], Any] | None = None,
        forward_logs: bool = True,
    ) -> None:
        self.job_id = job_id
        self._sink = sink
        self._live = live_outputs
        self._forward_logs = forward_logs
        self._stop = threading.Event()
        self._ended = False
        self._on_stop: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._pending_text: dict[str, str] = {}
        # Sources still writing text, each drained once before the last partial lines go out
        # (a worker process's captured file descriptors; see capture.capture_descriptors).
        self._text_sources: list[Callable[[], None]] = []
        self._outputs = 0
        # The store this job is recorded in, set by the runner. Providers use it to record what
        # they learn while the job runs (``resume_data``: how to continue its work in another
        # process; ``job_type_name``) and for holds that pace a session's jobs. Never secrets.
        self.store: Store | None = None
        # The session process (pid, creation time) that can take the rest of this job over, for
        # a worker process whose session waits for it (see hand_off); None elsewhere.
        self.session_host: tuple[int, float] | None = None
        self.handed_off = False
        # The job's resume_data is already in the store: it continues a handed-off wait.
        self.resume_recorded = False

    # -- what job code uses -------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once the job has been asked to stop; cooperative code may poll it."""
        return self._stop.is_set()

    def wait_for_stop(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early when the job is asked to stop; return
        whether it was. For code that pauses between polls."""
        return self._stop.wait(timeout)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once, from the stopping thread) when the job is asked to stop, or
        at once if it already was. For code that waits on something else and must wake for a
        stop too."""
        with self._lock:
            if not self._stop.is_set():
                self._on_stop.append(callback)
                return
        callback()

    def write_progress(self, activity: str, status: str, percent: int | None = None) -> None:
        if percent is not None and not 0 <= percent <= 100:
            raise ValueError(f"percent must be between 0 and 100, not {percent}")
        self._emit(r.PROGRESS, r.ProgressRecord(activity, status, percent))

    def write_warning(self, message: str) -> None:
        self._emit(r.WARNING, r.StreamRecord(str(message)))

    def write_verbose(self, message: str) -> None:
        self._emit(r.VERBOSE, r.StreamRecord(str(message)))

    def write_debug(self, message: str) -> None:
        self._emit(r.DEBUG, r.StreamRecord(str(message)))

    def write_information(self, message: str) -> None:
        self._emit(r.INFORMATION, r.StreamRecord(str(message)))

    def write_error(self, message: str | BaseException) -> None:
        """A non-terminating error: recorded on the error stream, the job goes on."""
        text = (
            f"{type(message).__name__}: {message}"
            if isinstance(message, BaseException)
            else str(message)
        )
        self._emit(r.ERROR, r.StreamRecord(text))

    # -- what providers use --------------------------------------------------------------------

    @property
    def can_hand_off(self) -> bool:
        return self.session_host is not None and self.store is not None

    def hand_off(self, resume_data: str, **fields: Any) -> HandedOff:
        """Give the rest of this job to its session, and return what the provider's ``finish``
        returns then: the worker process ends, and the session continues the job in a thread
        with the provider's :meth:`~asjob.plugins.Provider.resume_call` for ``resume_data``.

        For work that is only waiting (an Azure long-running operation: a poll every few
        seconds), a worker process per job costs megabytes each while a thread of the session
        costs next to nothing. The job stays Running throughout; its host becomes the session.
        """
        if self.session_host is None or self.store is None:
            raise RuntimeError("this job cannot be handed off (check can_hand_off first)")
        pid, started = self.session_host
        # Its kind says where it runs from now on: a stop from another process must not kill
        # its host (the session) as it kills a worker, but ask the session's thread to stop.
        self.store.update(
            self.job_id,
            resume_data=resume_data,
            host_pid=pid,
            host_started=started,
            kind="thread",
            **fields,
        )
        self.handed_off = True
        return HANDED_OFF

    # -- what the capture hooks and the runner use -------------------------------------------

    @property
    def ended(self) -> bool:
        """True once the job's outcome is recorded (see :meth:`end`)."""
        return self._ended

    def end(self) -> None:
        """The job has ended: threads it left running no longer write to it."""
        self._ended = True

    def request_stop(self) -> None:
        with self._lock:
            self._stop.set()
            callbacks, self._on_stop = self._on_stop, []
        for callback in callbacks:
            callback()

    def encode_output(self, value: Any) -> bytes:
        """The payload of the next output value. Raises ``TypeError``/``PicklingError`` for a
        value that cannot be pickled, unless the live object is kept in this process."""
        with self._lock:
            index = self._outputs
            self._outputs += 1
        if self._live is None:
            return r.encode(r.OutputItem(index, value))
        self._live[(self.job_id, index)] = value
        if self.stopping:
            # Nothing reaches a stopped job's store now, so no receive would take this back;
            # its remove may already have forgotten the job. (A stop that comes after this
            # check comes before that remove, which takes it back.)
            self._live.pop((self.job_id, index), None)
        try:
            return r.encode(r.OutputItem(index, value))
        except Exception:  # the live object is what this session's receive returns
            return r.encode(r.OutputItem(index, r.Unpicklable(_short_repr(value))))

    def write_output(self, value: Any) -> None:
        if not self.stopping:
            self._sink(r.OUTPUT, self.encode_output(value))

    def write_text(self, source: str, text: str) -> None:
        """Printed text: each complete line becomes one information record."""
        with self._lock:
            pending = self._pending_text.get(source, "") + text
            *lines, rest = pending.split("\n")
            self._pending_text[source] = rest
        for line in lines:
            self._emit(r.INFORMATION, r.StreamRecord(line, source=source))

    def add_text_source(self, drain: Callable[[], None]) -> None:
        """Register ``drain``, which makes a source of text for :meth:`write_text` deliver
        what it still holds and end; :meth:`flush` calls it (once) first."""
        with self._lock:
            self._text_sources.append(drain)

    def flush(self) -> None:
        """Deliver everything the job wrote to the store, before its outcome is recorded: the
        text not yet ended by a newline (once every text source has drained), and the records
        a batching sink still holds."""
        with self._lock:
            sources, self._text_sources = self._text_sources, []
        for drain in sources:
            drain()
        with self._lock:
            pending, self._pending_text = self._pending_text, {}
        for source, rest in pending.items():
            if rest:
                self._emit(r.INFORMATION, r.StreamRecord(rest, source=source))
        flush_sink = getattr(self._sink, "flush", None)
        if flush_sink is not None:
            flush_sink()

    def write_warning_message(
        self, message: Warning | str, category: type[Warning], filename: str, lineno: int
    ) -> None:
        self._emit(
            r.WARNING,
            r.StreamRecord(
                str(message),
                source="warnings",
                filename=filename,
                lineno=lineno,
                category=f"{category.__module__}.{category.__qualname__}",
            ),
        )

    def write_log(self, record: logging.LogRecord) -> None:
        """A logging record. Its full state is kept only when the caller's logging has not
        seen it yet (a job in another process), so receive can hand it on exactly once."""
        stream_record = r.record_from_log(record)
        if not self._forward_logs:
            stream_record = r.StreamRecord(
                stream_record.message,
                stream_record.source,
                stream_record.time,
                stream_record.level,
                None,
                stream_record.filename,
                stream_record.lineno,
            )
        self._emit(r.stream_for_level(record.levelno), stream_record)

    def _emit(self, stream: str, record: Any) -> None:
        if not self.stopping:
            self._sink(stream, r.encode(_without_credentials(record)))


def _without_credentials(record: Any) -> Any:
    """``record`` with the credentials its text shows redacted (see :mod:`asjob.redaction`):
    an SDK's network trace logs each request's ``Authorization`` header and body, and what a
    job logs or prints is stored and read by other processes."""
    if not isinstance(record, r.StreamRecord):
        return record
    message, log = redaction.scrubbed(record.message), redaction.scrubbed(record.log)
    if message is record.message and log is record.log:
        return record
    return dataclasses.replace(record, message=message, log=log)


class HandedOff:
    """What a provider's ``finish`` returns once it has handed the job off (see
    :meth:`JobWriter.hand_off`): the job is not over, its outcome comes from the session."""

    def __repr__(self) -> str:
        return "HANDED_OFF"


HANDED_OFF = HandedOff()


def _short_repr(value: Any) -> str:
    """What the store shows of a value it cannot hold; never raises (a repr may: one that
    fails, or a structure too deep for it)."""
    try:
        return repr(value)[:200]
    except Exception:
        return f"<{type(value).__qualname__} object>"


def current_job() -> JobWriter:
    """The writer of the job running in this thread (or this worker process).

    Raises :class:`LookupError` outside a job.
    """
    writer = active_writer()
    if writer is None:
        raise LookupError("current_job() is only available inside a running job")
    return writer


def active_writer() -> JobWriter | None:
    """The job this code works for, if any: its thread's, else its worker process's."""
    return _current.get() or _process_writer


def capturing_writer() -> JobWriter | None:
    """The job whose streams this code's output goes to: the active job, until it has ended.
    Code a job left running then writes where code outside jobs does."""
    writer = active_writer()
    return None if writer is None or writer.ended else writer


def thread_writer() -> JobWriter | None:
    """The job bound to this thread's context (a thread job's; not a worker process's)."""
    return _current.get()


def bind(writer: JobWriter | None) -> None:
    """Make ``writer`` the current job of this thread's context."""
    _current.set(writer)


def bind_process(writer: JobWriter) -> None:
    """Make ``writer`` the job of this whole process (a worker process runs one job)."""
    global _process_writer
    _process_writer = writer
