"""A job's stream records, written to the store in batches while they come fast.

Each record written on its own is a transaction of its own. A job that prints or yields
thousands of lines a second then costs a commit per line, and a few dozen such workers at once
commit so often that SQLite never gets to reset its write-ahead log, which grows by gigabytes.
So a record that follows the previous write within :data:`BATCH_WINDOW_S` waits, and a flusher
thread writes everything waiting, in one transaction, when the window closes::

    print ─► record ─┬─ none written for a window: written at once (sparse output never waits)
                     └─ else appended to the batch ─► flusher, at the window's end: one commit

The job's end flushes before its outcome is recorded, so a finished job's records are all
there. A worker killed mid-burst (a stop, a crash) loses at most the last window's records; a
stopped thread job's flusher still writes what came before the stop.
"""

from __future__ import annotations

import threading
import time

from ..store.base import Store

BATCH_WINDOW_S = 0.05


class BatchingSink:
    """A :data:`~asjob.writer.Sink` for one job's records (a worker process's job, a thread
    job). Thread-safe; records reach the store in the order they came."""

    def __init__(self, store: Store, job_id: int, window: float = BATCH_WINDOW_S) -> None:
        self._store = store
        self._job_id = job_id
        self._window = window
        self._pending: list[tuple[str, bytes]] = []
        self._last_write = float("-inf")
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # one batch at a time, so batches keep their order
        self._flusher: threading.Thread | None = None

    def __call__(self, stream: str, payload: bytes) -> None:
        with self._lock:
            self._pending.append((stream, payload))
            if time.monotonic() - self._last_write < self._window:
                self._wake_flusher()
                return
        self.flush()

    def flush(self) -> None:
        """Write every record waiting, now."""
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, []
                self._last_write = time.monotonic()
            if batch:
                self._store.append_records(self._job_id, batch)

    def _wake_flusher(self) -> None:
        """Start the flusher, unless it runs; called with the lock held."""
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_at_window_ends, name="asjob-record-batches", daemon=True
            )
            self._flusher.start()

    def _flush_at_window_ends(self) -> None:
        """Flush at the end of each window while records keep coming; end once none did
        (the next burst starts another), so an idle job holds no thread."""
        while True:
            with self._lock:
                if not self._pending:
                    self._flusher = None
                    return
                window_ends = self._last_write + self._window
            time.sleep(max(0.0, window_ends - time.monotonic()))
            self.flush()
