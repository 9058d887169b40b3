"""One job a session watches on a Dask cluster: its batches applied in order, its end once.

Interim batches come in order from one queue: the session's inbox (one thread takes them) or a
detached job's own queue (drained by one caller at a time). Each carries a sequence number, and
the final batch says how many interim ones preceded it: the job is settled only once those have
been applied, so its records stay in the order the job wrote them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ...store.base import Store
from ...worker.dask_protocol import EXITED, STARTED, Message, decode_batch
from .outcome import apply_interim

log = logging.getLogger("asjob.kinds.dask")


class JobWatch:
    """What a session knows of a job it watches: the task's future and the batches so far.

    ``queue`` is a detached job's own Dask Queue (``None`` for a job whose batches come through
    the session's inbox); ``queue_refs`` how many references to it this session releases once
    the job has ended: its own, plus the starter's when it adopted the job.
    """

    def __init__(
        self,
        store: Store,
        job_id: int,
        instance: str,
        scheduler: str,
        *,
        queue: Any = None,
        queue_refs: int = 0,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.instance = instance
        self.scheduler = scheduler
        self.queue = queue
        self.queue_refs = queue_refs
        self.future: Any = None
        self.claim: str | None = None  # the id its runner took the job's claim with
        self.done = threading.Event()  # settled: its end is in the store
        self._settling = False
        self._applied = 0
        self._changed = threading.Condition()
        self._draining = threading.Lock()

    @property
    def detached(self) -> bool:
        return self.queue is not None

    def offer(self, seq: int, messages: list[Message]) -> None:
        """Apply interim batch ``seq`` (batches arrive in order: each has one consumer)."""
        with self._changed:
            if seq <= self._applied or self.done.is_set():
                return  # already applied
            self.note_claim(messages)
            try:
                apply_interim(self.store, self.job_id, messages)
            except Exception:  # a store error loses this batch, never the watch
                log.exception("job %s: cannot record what it reported", self.job_id)
            self._applied = seq
            self._changed.notify_all()

    def begin_settling(self) -> bool:
        """Whether the caller is the one to settle the job: its final batch and its task's end
        race to it (from the inbox thread and the result thread), and only the first may."""
        with self._changed:
            if self._settling:
                return False
            self._settling = True
            return True

    def give_up_settling(self) -> None:
        """Let the other report settle the job: this one failed to."""
        with self._changed:
            self._settling = False

    def note_claim(self, messages: list[Message]) -> None:
        """Remember the id the runner took the job's claim with, to release it at the end."""
        for message in messages:
            if message[0] in (STARTED, EXITED) and len(message) > 3:
                self.claim = message[3]

    def drain(self) -> None:
        """Apply what waits in a detached job's own queue, oldest first."""
        if self.queue is None:
            return
        with self._draining:  # two drains at once could apply their takes out of order
            for data in self.queue.get(batch=True):
                _instance, seq, messages, _final = decode_batch(data)
                self.offer(seq, messages)

    def wait_applied(self, count: int, timeout: float) -> bool:
        """Make sure the interim batches before the final one (``count`` of them) are applied.

        All were queued before the task ended. A detached job's are in its queue, or were taken
        by whoever watched it before (its starter): one drain does. An inbox job's reach the
        inbox thread, which applies them: wait for it.
        """
        if self.detached:
            try:
                self.drain()
            except Exception:  # the cluster went away: settle with what there is
                return False
            return True
        with self._changed:
            return self._changed.wait_for(lambda: self._applied >= count, timeout)
