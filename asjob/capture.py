"""Plain Python output captured into the running job's streams.

``print``/``sys.stdout``/``sys.stderr`` → information (in a worker process also whatever is
written to file descriptors 1 and 2: a subprocess's output, ``os.write``, a C library),
:func:`warnings.warn` → warning, :mod:`logging` → debug/verbose/warning/error by level. The
hooks dispatch on the current job (:func:`asjob.writer.capturing_writer`), so thread jobs running
at once never mix their streams and code outside any job writes where it always did.

They are (re)installed at every job start, not once at import: test runners such as pytest
replace ``sys.stdout`` for every test phase and reset ``warnings.showwarning`` per test.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import sys
import threading
import time
import warnings
from typing import Any, TextIO

from .writer import JobWriter, capturing_writer


class _StreamDispatch:
    """Stands in for ``sys.stdout``/``sys.stderr``: job text to the job, the rest passed on."""

    def __init__(self, source: str, original: TextIO) -> None:
        self._source = source
        self.original = original

    def write(self, text: str) -> int:
        writer = capturing_writer()
        if writer is None:
            return self.original.write(text)
        writer.write_text(self._source, text)
        return len(text)

    def flush(self) -> None:
        if capturing_writer() is None:
            self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


class _LogHandler(logging.Handler):
    """Sends records logged inside a job to the job's streams.

    Outside any job it stands in for the handler its presence on the root logger displaces:
    logging falls back to :data:`logging.lastResort` (warnings and errors to stderr) only when
    no handler at all is found, and this one always is.
    """

    def emit(self, record: logging.LogRecord) -> None:
        writer = capturing_writer()
        if writer is not None:
            writer.write_log(record)
        else:
            fallback = logging.lastResort
            if fallback and record.levelno >= fallback.level and not _handled_elsewhere(record):
                fallback.handle(record)


def _handled_elsewhere(record: logging.LogRecord) -> bool:
    """Whether a handler other than ours sees ``record`` (as ``Logger.callHandlers`` looks)."""
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        for handler in logger.handlers:
            if handler is not _log_handler and record.levelno >= handler.level:
                return True
        logger = logger.parent if logger.propagate else None
    return False


_log_handler = _LogHandler()


def _showwarning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    writer = capturing_writer()
    if writer is None:
        _original_showwarning(message, category, filename, lineno, file, line)
    else:
        writer.write_warning_message(message, category, filename, lineno)


_original_showwarning = warnings.showwarning


def install() -> None:
    """Put the dispatching hooks in place (idempotent)."""
    global _original_showwarning
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if not isinstance(current, _StreamDispatch) and current is not None:
            setattr(sys, name, _StreamDispatch(name, current))
    if warnings.showwarning is not _showwarning:
        _original_showwarning = warnings.showwarning
        warnings.showwarning = _showwarning
    root = logging.getLogger()
    if _log_handler not in root.handlers:
        root.addHandler(_log_handler)


def install_exclusive() -> None:
    """For a worker process, where everything belongs to the one job: capture every warning,
    and let logging records reach the job only (the caller re-emits them on receive)."""
    install()
    warnings.simplefilter("always")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler is not _log_handler:
            root.removeHandler(handler)
            handler.close()  # this process's copy of it (a log file the script opened)


DRAIN_WAIT_S = 1.0
"""How long the end of a job waits for its captured descriptors to reach end of file: longer
only when a process it started in the background still holds them (its later output is lost)."""


def capture_descriptors(writer: JobWriter) -> None:
    """In a worker process, where everything belongs to the one job: send what is written to
    file descriptors 1 and 2 from now on to ``writer``'s information stream, as ``print``'s
    text goes, until the writer flushes its text (the job's end), when they are restored.

    ``sys.stdout`` catches only Python's own writes; a command the job runs (``az``,
    ``terraform``) writes to the descriptors it inherits, which would otherwise reach the
    caller's terminal unrecorded, or nothing at all for a detached job.
    """
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    pumps, saved = [], []
    for fd, source in ((1, "stdout"), (2, "stderr")):
        read_end, write_end = os.pipe()
        saved.append(os.dup(fd))
        os.dup2(write_end, fd)
        os.close(write_end)
        pump = threading.Thread(
            target=_pump, args=(read_end, source, writer), name=f"asjob-{source}", daemon=True
        )
        pump.start()
        pumps.append(pump)

    def drain() -> None:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        for fd, original in zip((1, 2), saved, strict=True):
            os.dup2(original, fd)  # the pipes' last write ends here: the pumps reach EOF
            os.close(original)
        deadline = time.monotonic() + DRAIN_WAIT_S
        for pump in pumps:
            pump.join(max(0.0, deadline - time.monotonic()))

    writer.add_text_source(drain)


def _pump(read_end: int, source: str, writer: JobWriter) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        while chunk := os.read(read_end, 1 << 16):
            writer.write_text(source, decoder.decode(chunk))
        writer.write_text(source, decoder.decode(b"", final=True))
    finally:
        os.close(read_end)
