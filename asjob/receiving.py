"""Turning drained stream records back into what the caller sees.

Output values come back as stored copies, or as the live objects when this session ran the job
in a thread. Warnings are re-emitted with :func:`warnings.warn_explicit` (original category,
file and line) and log records from other processes handed to the caller's loggers, each once:
only when the records are drained, never for ``keep``.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import TYPE_CHECKING, Any

from . import records as r

if TYPE_CHECKING:
    from .session import Session


def output_values(
    session: Session, job_id: int, items: list[r.OutputItem], *, keep: bool
) -> list[Any]:
    values = []
    for item in items:
        key = (job_id, item.index)
        if key in session.live_outputs:
            value = session.live_outputs[key] if keep else session.live_outputs.pop(key)
        else:
            value = item.value
        values.append(value)
    return values


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


def replay(records: list[tuple[str, Any]]) -> None:
    """Hand drained warnings and foreign log records to the caller's warnings and logging."""
    for _stream, record in records:
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
