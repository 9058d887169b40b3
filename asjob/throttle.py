"""``throttle_limit``: at most N jobs of one decorated function run at once; the rest wait as
NotStarted and start in submission order as slots free."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable


class Throttle:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"throttle_limit must be at least 1, not {limit}")
        self.limit = limit
        self._lock = threading.Lock()
        self._running: set[int] = set()
        self._waiting: collections.OrderedDict[int, Callable[[], None]] = collections.OrderedDict()
        # Jobs given a slot, not yet launched, and whether some thread is launching them: one
        # launcher at a time keeps starts in order when several jobs end at once.
        self._ready: collections.deque[Callable[[], None]] = collections.deque()
        self._launching = False

    def submit(self, job_id: int, launch: Callable[[], None]) -> bool:
        """Run ``launch`` now if a slot is free (returns True), else queue it."""
        with self._lock:
            if len(self._running) >= self.limit:
                self._waiting[job_id] = launch
                return False
            self._running.add(job_id)
        return True

    def release(self, job_id: int) -> None:
        """``job_id`` finished (or will never start): start whatever now fits."""
        with self._lock:
            self._running.discard(job_id)
            self._waiting.pop(job_id, None)
            while self._waiting and len(self._running) < self.limit:
                next_id, launch = self._waiting.popitem(last=False)
                self._running.add(next_id)
                self._ready.append(launch)
            if self._launching:
                return  # the thread launching now takes these too, after the earlier ones
            self._launching = True
        try:
            while True:
                with self._lock:
                    if not self._ready:
                        return
                    launch = self._ready.popleft()
                launch()  # outside the lock: a launch that fails at once releases its slot
        finally:
            with self._lock:
                self._launching = False

    def owns(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._running or job_id in self._waiting
