"""The caller's logger levels, taken where a job starts and given to the process that runs it,
so a job in another process logs what the caller would see."""

from __future__ import annotations

import logging


def caller_log_levels() -> dict[str, int]:
    """The root level and every logger's own level (``""`` names the root)."""
    levels = {"": logging.getLogger().level}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels[name] = logger.level
    return levels


def apply_log_levels(levels: dict[str, int]) -> None:
    """Give this process the levels :func:`caller_log_levels` took."""
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)
