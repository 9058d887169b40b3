"""The log of requests the emulator answered, bounded, plus cumulative counters.

The log holds the last ``maxlen`` ARM and identity requests (control requests under
``/_emulator/`` are left out so reading the log does not change it). ``clear()`` empties the log
only; the counters behind ``/_emulator/stats`` run from start-up.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import TypedDict

_PLURALS = {"PATCH": "patches"}


class RequestRecord(TypedDict):
    """One answered request: the URL path without its query, the query, and the status sent."""

    method: str
    path: str
    query: str
    status: int
    time: float


class RequestLog:
    def __init__(self, maxlen: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[RequestRecord] = deque(maxlen=maxlen)
        self._counts: Counter[str] = Counter()

    def record(self, method: str, path: str, query: str, status: int, *, arm: bool) -> None:
        entry = RequestRecord(
            method=method, path=path, query=query, status=status, time=time.time()
        )
        with self._lock:
            self._entries.append(entry)
            if arm:
                self._counts["requests"] += 1
                self._counts[_PLURALS.get(method, f"{method.lower()}s")] += 1
                if status == 401:
                    self._counts["unauthorized"] += 1

    def count(self, name: str, n: int = 1) -> None:
        """Bump a named counter (``faults_served``, ...)."""
        with self._lock:
            self._counts[name] += n

    def entries(self) -> list[RequestRecord]:
        with self._lock:
            return [entry.copy() for entry in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def counts(self) -> dict[str, int]:
        """Counters since start-up; the usual ones are present even when zero."""
        with self._lock:
            base = dict.fromkeys(
                ("requests", "gets", "puts", "posts", "deletes", "patches", "unauthorized"), 0
            )
            return base | dict(self._counts)
