"""Stream records: what a job writes besides its result, and how it is kept in the store.

PowerShell jobs have seven streams; so do asjob jobs. ``output`` holds the job's values (its
return value, or each item a generator yields); the others hold :class:`StreamRecord` and
:class:`ProgressRecord` objects. In the store each record is ``(stream name, payload bytes)``.
"""

from __future__ import annotations

import logging
import pickle
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


@dataclass(frozen=True)
class OutputItem:
    """An output value with its position in the job's output, so a session that holds the live
    object (a thread job's) can hand that back instead of the stored copy."""

    index: int
    value: Any


class Unpicklable:
    """Stands in the store for an output value that could not be pickled (thread jobs only)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<unpicklable {self.text}>"


def encode(record: Any) -> bytes:
    return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)


def decode(payload: bytes) -> Any:
    return pickle.loads(payload)


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
