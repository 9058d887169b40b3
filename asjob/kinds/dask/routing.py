"""Where a ``dask`` job went, kept in its record so any process sharing the store finds it.

The record's ``resume_data`` (a JSON object) carries it under the key ``"dask"``: the scheduler's
address and the starting process (pid and start time), so another process can stop the job and,
once its starter has exited, collect a detached job's result. A provider may keep its own resume
data in the same object (an Azure operation's continuation token): the two are merged, never
one written over the other.
"""

from __future__ import annotations

import json
from typing import Any

KEY = "dask"
VERSION = 1


def routing(scheduler: str, starter: tuple[int, float]) -> str:
    """The ``resume_data`` of a job just handed to the scheduler at ``scheduler``."""
    return json.dumps({KEY: {"version": VERSION, "scheduler": scheduler, "starter": list(starter)}})


def read(resume_data: str | None) -> dict[str, Any] | None:
    """The routing in ``resume_data``, or ``None`` if there is none."""
    data = _object(resume_data)
    entry = None if data is None else data.get(KEY)
    if isinstance(entry, dict) and isinstance(entry.get("scheduler"), str):
        return entry
    return None


def merged(current: str | None, provided: str | None) -> str | None:
    """What a provider's new ``resume_data`` becomes: its own, with the routing kept."""
    entry = read(current)
    data = _object(provided)
    if entry is None or data is None:
        return provided  # nothing to keep, or not an object to keep it in
    return json.dumps({**data, KEY: entry})


def _object(text: str | None) -> dict[str, Any] | None:
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
