"""Stream records: what a job writes besides its result, and how it is kept in the store.

PowerShell jobs have seven streams; so do asjob jobs. ``output`` holds the job's values (its
return value, or each item a generator yields); the others hold :class:`StreamRecord` and
:class:`ProgressRecord` objects. In the store each record is ``(stream name, payload bytes)``.
"""

from __future__ import annotations

import logging
import pickle
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

OUTPUT = "output"
ERROR = "error"
WARNING = "warning"
VERBOSE = "verbose"
DEBUG = "debug"
INFORMATION = "information"
PROGRESS = "progress"
STREAMS = (OUTPUT, ERROR, WARNING, VERBOSE, DEBUG, INFORMATION, PROGRESS)


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class StreamRecord:
    """One message on the error, warning, verbose, debug or information stream.

    ``source`` says where it came from: a logger's name, ``"stdout"``/``"stderr"`` for printed
    text, ``"warnings"`` for :func:`warnings.warn`, ``"job"`` for the ``current_job()`` writers.
    ``level`` is the logging level of records that came from :mod:`logging`; ``category`` the
    warning class (``"module.QualName"``) of records that came from :mod:`warnings`.
    """

    message: str
    source: str = "job"
    time: datetime = field(default_factory=_now)
    level: int | None = None
    category: str | None = None
    filename: str | None = None
    lineno: int | None = None
    log: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ProgressRecord:
    """A progress report, as ``Write-Progress`` makes one."""

    activity: str
    status: str
    percent: int | None = None
    time: datetime = field(default_factory=_now)

    def __str__(self) -> str:
        pct = "" if self.percent is None else f" {self.percent}%"
        return f"{self.activity}: {self.status}{pct}"


_UNSET: Any = object()


class OutputItem:
    """An output value with its position (``index``) in the job's output.

    In the store the value is pickled on its own inside the record and unpickled only when
    :attr:`value` is first read. So the index can be read alone: a session that holds the live
    object (a thread job's) hands that back and never unpickles the copy, and a copy that
    cannot be unpickled here (its class is not importable) fails only when asked for, with the
    record already read and identified.
    """

    __slots__ = ("_pickled", "_value", "index")

    def __init__(self, index: int, value: Any) -> None:
        self.index = index
        self._value = value
        self._pickled: bytes | None = None

    @classmethod
    def stored(cls, index: int, pickled: bytes) -> OutputItem:
        """The item as read from the store, its value still pickled."""
        item = cls(index, _UNSET)
        item._pickled = pickled
        return item

    @property
    def value(self) -> Any:
        """The value; raises what unpickling it raises (e.g. ``ModuleNotFoundError``)."""
        if self._value is _UNSET:
            assert self._pickled is not None
            self._value = decode(self._pickled)
        return self._value

    def __reduce__(self) -> tuple[Any, ...]:
        pickled = self._pickled if self._value is _UNSET else encode(self._value)
        return (_stored_output, (self.index, pickled))

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A record stored by an asjob whose items were plain dataclasses (value pickled inline,
        # so already unpickled here): a job still unreceived across an upgrade stays readable.
        self.index, self._value, self._pickled = state["index"], state["value"], None

    def __repr__(self) -> str:
        shown = "<pickled>" if self._value is _UNSET else repr(self._value)
        return f"OutputItem({self.index}, {shown})"


def _stored_output(index: int, pickled: bytes) -> OutputItem:
    return OutputItem.stored(index, pickled)


class Unpicklable:
    """Stands in the store for an output value that could not be pickled (thread jobs only)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<unpicklable {self.text}>"


def encode(record: Any) -> bytes:
    return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)


def decode(payload: bytes) -> Any:
    alias_main_module()
    return pickle.loads(payload)


def alias_main_module() -> None:
    """Let ``__mp_main__`` name this process's ``__main__``, as importing multiprocessing does.

    A process job runs in a worker whose server loaded the caller's main script as
    ``__mp_main__`` (multiprocessing's spawn does the same), so a class or exception type
    defined in that script comes back named ``__mp_main__.Point``. A process that has a real
    ``__mp_main__`` (a worker itself) keeps it.
    """
    main = sys.modules.get("__main__")
    if main is not None:
        sys.modules.setdefault("__mp_main__", main)


def log_record_state(record: logging.LogRecord) -> dict[str, Any]:
    """The parts of a log record that survive pickling, message already formatted."""
    state = {
        k: v
        for k, v in record.__dict__.items()
        if k not in ("args", "exc_info", "msg") and _is_plain(v)
    }
    state["msg"] = record.getMessage()
    state["args"] = None
    if record.exc_info and not record.exc_text:
        state["exc_text"] = logging.Formatter().formatException(record.exc_info)
    return state


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def stream_for_level(levelno: int) -> str:
    """Which job stream a logging record of this level goes to."""
    if levelno >= logging.ERROR:
        return ERROR
    if levelno >= logging.WARNING:
        return WARNING
    if levelno >= logging.INFO:
        return VERBOSE
    return DEBUG


def record_from_log(record: logging.LogRecord) -> StreamRecord:
    return StreamRecord(
        message=record.getMessage(),
        source=record.name,
        level=record.levelno,
        time=datetime.fromtimestamp(record.created, timezone.utc),
        filename=record.pathname,
        lineno=record.lineno,
        log=log_record_state(record),
    )
