"""Where job records live: the contract and its two implementations, and the default location."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from ..errors import StoreError
from .base import JobRecord, NewJob, Store, StreamRow
from .memory import MemoryStore
from .sqlite import SQLiteStore

STORE_ENV = "ASJOB_STORE"


def default_store_path() -> Path:
    """``$ASJOB_STORE`` if set, else ``jobs.db`` in the user's state directory."""
    configured = os.environ.get(STORE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_state_dir("asjob")) / "jobs.db"


def open_store(path: str | os.PathLike[str] | None = None) -> SQLiteStore:
    """Open (creating if needed) the SQLite store at ``path`` or the default location."""
    return SQLiteStore(path if path is not None else default_store_path())


__all__ = [
    "STORE_ENV",
    "JobRecord",
    "MemoryStore",
    "NewJob",
    "SQLiteStore",
    "Store",
    "StoreError",
    "StreamRow",
    "default_store_path",
    "open_store",
]
