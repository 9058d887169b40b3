"""A session's connection to one Dask scheduler, and the two threads that listen on it.

::

    Client ──submit(run_job)──► cluster ──task ends──► as_completed ──► result thread ─► on_done
      ▲                            │ interim batches, and final ones
      │                            ▼
      └── inbox (a Dask Queue, one per connection) ──► inbox thread ─► on_batch
          detached jobs' own queues, polled while any are watched ─┘

Both threads run the session's callbacks, which write the store. Neither relies on Dask's
callback executor: it refuses work once the interpreter starts exiting, which is exactly when
the session stops its jobs. The result thread is told a task has ended, not its result: most
jobs have been settled from their final batch by then, and :func:`task_outcome` fetches the
result of the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import distributed
from distributed.client import FutureCancelledError

from ...worker.dask_protocol import decode_batch
from ...worker.dask_runner import kill_job, run_job

log = logging.getLogger("asjob.kinds.dask")
# distributed is typed only in part (Queue and as_completed are not): its objects are
# handled as Any here, behind this module's typed methods.
_dd: Any = distributed

CONNECT_TIMEOUT_S = 10.0
ANSWER_WAIT_S = 5.0
"""How long a request that a stop or the end of a session makes waits for the scheduler: a
frozen one accepts requests and never answers, and distributed would wait for it forever."""
DEFAULT_PORT = 8786  # a scheduler's, when an address names none (as distributed assumes)
POLL_S = 0.05
RETRY_S = 0.5
CLOSE_WAIT_S = 2.0
# Handling a task's end may wait for the job's last records (backend.SETTLE_WAIT_S) first.
HANDLING_END_WAIT_S = 10.0
_WAKE = b""  # put in the inbox to wake its thread; never a batch

OnBatch = Callable[[str, int, list[tuple[Any, ...]], bool], None]
OnDone = Callable[[Any], None]
OnWorkerLost = Callable[[str, str, list[str]], None]
Poll = Callable[[], None]
T = TypeVar("T")


class NoAnswer(TimeoutError):
    """The scheduler did not answer a request in time (frozen, or cut off)."""


def cancel_reason(future: Any) -> str:
    """Why distributed cancelled ``future`` (e.g. the client lost its scheduler), in words."""
    # The reason is on the future's state only (FutureCancelledError, kept since 2024).
    error = getattr(getattr(future, "_state", None), "exception", None)
    return str(error).strip() if error is not None else "its task was cancelled"


def task_outcome(future: Any) -> tuple[str, Any]:
    """How an ended task ended: ``("finished", its result)``, ``("cancelled", None)`` or
    ``("failed", the exception)``; the result is fetched from the cluster."""
    if future.status == "cancelled":
        return "cancelled", None
    try:
        return "finished", future.result()
    except FutureCancelledError:  # cancelled while its result was being fetched
        return "cancelled", None
    except Exception as exc:
        return "failed", exc


def check_reachable(address: str) -> None:
    """Raise ``OSError`` (or ``ValueError``) at once if nothing listens at a TCP or TLS
    scheduler ``address``. A ``distributed.Client`` whose constructor fails cannot be closed:
    its finaliser waits out a close timeout and prints a traceback at exit."""
    protocol, location = _dd.comm.addressing.parse_address(address)
    if protocol not in ("tcp", "tls"):
        return  # other transports are left to distributed
    host, port = _dd.comm.addressing.parse_host_port(location, default_port=DEFAULT_PORT)
    with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
        pass
    if protocol == "tcp":  # TLS needs the security the client is given: left to it
        _check_answers(f"tcp://{host}:{port}")


def _check_answers(address: str) -> None:
    """Raise ``OSError`` unless a scheduler answers distributed's handshake at ``address``
    within CONNECT_TIMEOUT_S. A frozen scheduler, or another program listening there, accepts
    the connection and never answers, and ``distributed.Client`` then waits for it forever."""
    outcome: list[BaseException | None] = []

    async def handshake() -> None:
        comm = await asyncio.wait_for(
            _dd.comm.connect(address, timeout=CONNECT_TIMEOUT_S, deserialize=False),
            CONNECT_TIMEOUT_S,
        )
        await comm.close()

    def probe() -> None:  # its own thread and event loop: the caller may be running one
        try:
            asyncio.run(handshake())
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    prober = threading.Thread(target=probe, name="asjob-dask-probe", daemon=True)
    prober.start()
    prober.join(CONNECT_TIMEOUT_S + 2)
    failure = outcome[0] if outcome else asyncio.TimeoutError()
    if isinstance(failure, asyncio.TimeoutError):
        raise NoAnswer(
            f"it accepted a connection but gave no answer within {CONNECT_TIMEOUT_S:.0f} s "
            "(a frozen scheduler, or not a Dask scheduler)"
        )
    if failure is not None:
        raise OSError(f"its handshake failed: {failure}") from failure


class Cluster:
    """A client on the scheduler at ``address``, its inbox, and the threads listening on them."""

    def __init__(
        self, address: str, on_batch: OnBatch, on_done: OnDone, on_worker_lost: OnWorkerLost
    ) -> None:
        self.address = address
        self._on_batch = on_batch
        self._on_done = on_done
        self._on_worker_lost = on_worker_lost
        self.unanswering = False  # a request found it frozen: later ones are not sent
        self._unanswered_at = float("-inf")
        check_reachable(address)
        self.client: Any = _dd.Client(address, set_as_default=False, timeout=CONNECT_TIMEOUT_S)
        # Replaced when the client reconnects by itself (a scheduler restarted at the same
        # address): the inbox and the subscription made on the first are gone with it.
        self._first_comm = self.client.scheduler_comm
        try:
            self.inbox: Any = _dd.Queue(f"asjob-inbox-{uuid.uuid4().hex}", client=self.client)
            # A worker that leaves (killed, crashed) takes its jobs' processes with it; nothing
            # else would tell, since Dask keeps the task to run again on the next worker.
            self.client.subscribe_topic("all", self._event)
        except BaseException:
            self.client.close()
            raise
        self._completed: Any = _dd.as_completed(loop=self.client.loop)
        self._more = threading.Event()
        self._polls: dict[str, Poll] = {}
        self._releasing: set[concurrent.futures.Future[None]] = set()
        self._lock = threading.Lock()
        # Held while a task's end is handled: its clean-up on the cluster needs the client.
        self._handling_end = threading.Lock()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._listen, name="asjob-dask-inbox", daemon=True),
            threading.Thread(target=self._collect, name="asjob-dask-results", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __repr__(self) -> str:
        return f"<Cluster {self.address}>"

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, spec: bytes, key: str) -> Any:
        # retries=0: a job's failure is its outcome; a worker's death is caught by the claim.
        future = self.client.submit(run_job, spec, key=key, pure=False, retries=0)
        self._completed.add(future)
        self._more.set()
        return future

    def track(self, future: Any) -> None:
        """Report ``future``'s end through ``on_done`` (a detached job this session adopts)."""
        self._completed.add(future)
        self._more.set()

    def open_queue(self, name: str) -> Any:
        return self.answered(lambda: _dd.Queue(name, client=self.client))

    def publish(self, future: Any, name: str) -> None:
        self.answered(lambda: self.client.publish_dataset(future, name=name))

    def poll(self, name: str, poll: Poll | None) -> None:
        """Call ``poll`` every POLL_S from the inbox thread (a detached job's queue); ``None``
        stops it."""
        with self._lock:
            if poll is None:
                self._polls.pop(name, None)
                return
            self._polls[name] = poll
        self._wake()

    @property
    def lost(self) -> bool:
        """Whether this connection's scheduler went away (even if a new one answers there)."""
        return self.client.status != "running" or self.client.scheduler_comm is not self._first_comm

    @property
    def connected(self) -> bool:
        """Whether requests can be sent (the client is connected, the scheduler answers)."""
        return self.client.status == "running" and not self.unanswering

    def answered(self, request: Callable[[], T]) -> T:
        """``request()`` (a call that asks the scheduler), given up with :class:`NoAnswer`
        after ANSWER_WAIT_S; once given up, later requests are refused at once (until
        :meth:`answers_again`). A request given up on keeps its thread waiting until the
        scheduler answers or the client is closed."""
        if self.unanswering:
            raise NoAnswer(f"the Dask scheduler at {self.address} has stopped answering")
        outcome: list[tuple[bool, Any]] = []
        given_up = threading.Event()

        def ask() -> None:
            try:
                outcome.append((True, request()))
            except BaseException as exc:
                outcome.append((False, exc))
            if given_up.is_set():  # answered after all, late: it answers again
                self.unanswering = False

        # A daemon thread, not an executor's: one left waiting must not hold up the exit.
        asking = threading.Thread(target=ask, name="asjob-dask-request", daemon=True)
        asking.start()
        asking.join(ANSWER_WAIT_S)
        if not outcome:
            self.unanswering = True
            self._unanswered_at = time.monotonic()
            given_up.set()
            raise NoAnswer(
                f"the Dask scheduler at {self.address} did not answer within "
                f"{ANSWER_WAIT_S:.0f} s (frozen, or cut off)"
            )
        ok, value = outcome[0]
        if not ok:
            raise value
        result: T = value
        return result

    @property
    def just_found_frozen(self) -> bool:
        """Whether a request was given up on in the last ANSWER_WAIT_S (and none answered
        since): stopping ten jobs on a frozen scheduler then takes one wait, not ten."""
        return self.unanswering and time.monotonic() - self._unanswered_at < ANSWER_WAIT_S

    def answers_again(self) -> bool:
        """Whether the scheduler, found frozen before, answers a request now."""
        self.unanswering = False
        try:
            self.answered(self.client.scheduler_info)
        except NoAnswer:
            return False
        except Exception:  # an error is an answer too
            pass
        return True

    def kill(self, instance: str, workers: list[str] | None) -> bool:
        """Kill the job's process where it runs; whether it was running anywhere."""
        killed = self.answered(
            lambda: self.client.run(kill_job, instance, workers=workers, on_error="ignore")
        )
        return any(killed.values())

    def kill_when_answered(self, instance: str, workers: list[str] | None) -> None:
        """Send the kill of :meth:`kill` without waiting for it: it reaches the job's process
        once the scheduler answers again."""

        def send() -> None:
            with contextlib.suppress(Exception):
                self.client.run(kill_job, instance, workers=workers, on_error="ignore")

        threading.Thread(target=send, name="asjob-dask-late-stop", daemon=True).start()

    def cancel(self, future: Any) -> None:
        self.answered(lambda: self.client.cancel([future], force=True))

    def _event(self, event: tuple[float, Any]) -> None:
        """On the client's event loop: pass a worker's leaving to a thread of its own (what
        follows reads and writes the store, and must not hold up the loop)."""
        message = event[1]
        if isinstance(message, dict) and message.get("action") == "remove-worker":
            worker = str(message.get("worker"))
            assigned = [str(key) for key in message.get("processing-tasks") or ()]
            threading.Thread(
                target=self._on_worker_lost,
                args=(self.address, worker, assigned),
                name="asjob-dask-worker-lost",
                daemon=True,
            ).start()

    def release_claim(self, lock_id: str) -> None:
        """Release a job's claim (a MultiLock its runner took) once the job has been settled.

        Sent without waiting for the reply: nothing waits on it, and the result thread has
        other jobs to settle (``close`` waits for the replies still due).
        """
        scheduler = self.client.scheduler

        async def release() -> None:
            with contextlib.suppress(Exception):  # a claim left held only stops a re-run
                await scheduler.multi_lock_release(id=lock_id)

        sent = asyncio.run_coroutine_threadsafe(release(), self.client.loop.asyncio_loop)
        with self._lock:
            self._releasing.add(sent)
        sent.add_done_callback(self._released)

    def _released(self, sent: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._releasing.discard(sent)

    # -- the threads -------------------------------------------------------------------------

    def _listen(self) -> None:
        while not self._closing:
            try:
                with self._lock:
                    polls = list(self._polls.values())
                if polls:
                    self._deliver(self.inbox.get(batch=True))
                    for poll in polls:
                        poll()
                    time.sleep(POLL_S)
                else:
                    # Blocks until a batch or a wake-up, which is delivered before asking for
                    # what followed it: usually nothing, and a job's end should not wait for that.
                    self._deliver([self.inbox.get()])
                    self._deliver(self.inbox.get(batch=True))
            except Exception:
                if self._closing:
                    return
                log.debug("the inbox of %s failed; retrying", self.address, exc_info=True)
                time.sleep(RETRY_S)

    def _deliver(self, items: list[bytes]) -> None:
        for data in items:
            if data == _WAKE:
                continue
            instance, seq, messages, final = decode_batch(data)
            self._on_batch(instance, seq, messages, final)

    def _wake(self) -> None:
        with contextlib.suppress(Exception):
            self.inbox.put(_WAKE)

    def _collect(self) -> None:
        while True:
            self._more.clear()
            if self._closing:
                return
            if self._completed.is_empty():
                self._more.wait()
                continue
            try:
                future = next(self._completed)
            except StopIteration:
                continue
            with self._handling_end:
                if self._closing:
                    continue
                try:
                    self._on_done(future)
                except Exception:  # one job's trouble must not end the thread serving all
                    log.exception("settling the Dask task %s failed", future.key)
            # Its key is released now, not once the next task has ended (its result would stay
            # in its worker's memory until then).
            del future

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening and disconnect. Detached jobs go on: their tasks are published."""
        self._closing = True
        # A task's end being handled now is seen through first (the job recorded as ended,
        # its script may exit at once): its claim, published task and queue would stay behind.
        on_result_thread = threading.current_thread() is self._threads[1]
        if not on_result_thread and self._handling_end.acquire(timeout=HANDLING_END_WAIT_S):
            self._handling_end.release()
        # A scheduler that has gone away (its cluster was shut down first), or that does not
        # answer, gets no requests: each would wait out a timeout, or forever.
        if self.connected:
            with contextlib.suppress(Exception):
                self.answered(self._wake)
        self._more.set()
        self._join(self._threads[0])
        if self.connected:
            with self._lock:
                releasing = list(self._releasing)
            concurrent.futures.wait(releasing, timeout=CLOSE_WAIT_S)
            with contextlib.suppress(Exception):
                self.answered(self.inbox.close)
        if self.client.status == "running":
            with contextlib.suppress(Exception):
                self.client.close(timeout=CLOSE_WAIT_S)
        self._more.set()
        self._join(self._threads[1])

    @staticmethod
    def _join(thread: threading.Thread) -> None:
        # Closed from one of its own threads (a throttled job launched by the end of another
        # finds the connection lost): that thread ends when it returns there.
        if thread is not threading.current_thread():
            thread.join(timeout=CLOSE_WAIT_S)
