"""A job's own process on a Dask worker, forked by the worker's fork server; a stop kills it
with its process group.

::

    fork server ──fork──► job process: own process group, inherited descriptors closed;
                          ("hello", pid) to the worker; warms up (see _warm_up) and waits
                          for a job
    runner ══socket══►
      ("job", spec)        unpickles the call (importing what it needs), gets everything ready
      ("go",)              runs it with asjob.worker.runner.run_call, whose store writes are
                           relayed back over the socket (RelayStore): the session's store decides
                           ──► its messages; from the outcome on, held and sent in one write
                               with the last one, ("modules", [names]) (see _Outbox)
      its worker dies      the fork server kills the job's process group (the server dying:
                           the kernel kills the process, or a lifeline thread off Linux)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn

from .. import capture, context
from .. import writer as writers
from ..call import Call
from ..failures import encode_failure
from ..records import OUTPUT
from ..states import JobState, transition
from ..store.base import JobRecord, NewJob, StreamRow
from . import protocol
from .dask_protocol import (
    GO,
    HELLO,
    HOLD,
    JOB,
    MODULES,
    OUTCOME,
    RECORDS,
    UPDATE,
    Message,
    RemoteCall,
)
from .log_levels import apply_log_levels
from .payload import Channel, dumps_call, loads_call
from .protocol import Frames
from .runner import run_call, store_sink


class RelayStore:
    """The store a job's call sees in its process on a Dask worker.

    Writes are relayed to the session, whose store decides: the outcome arrives there as a
    compare-and-set like any other, so a job stopped meanwhile stays Stopped. Here every
    change is taken as made. Nothing reads the store from a job's process.
    """

    def __init__(self, send: Callable[[Message], None]) -> None:
        self._send = send

    @property
    def path(self) -> str | None:
        return None

    def compare_and_set_state(
        self,
        job_id: int,
        sources: frozenset[JobState],
        target: JobState,
        *,
        records: Sequence[tuple[str, bytes]] = (),
        **fields: Any,
    ) -> bool:
        self._send((OUTCOME, target.value, fields, list(records)))
        return True

    def update(self, job_id: int, **fields: Any) -> None:
        self._send((UPDATE, fields))

    def append_records(self, job_id: int, records: Sequence[tuple[str, bytes]]) -> None:
        self._send((RECORDS, list(records)))

    def create_job(self, new: NewJob) -> JobRecord:
        raise NotImplementedError("a job's process on a Dask worker cannot create jobs")

    def get_job(self, job_id: int) -> JobRecord:
        raise NotImplementedError("a job's process on a Dask worker cannot read the store")

    def list_jobs(
        self,
        *,
        session_id: str | None = None,
        parent_id: int | None = None,
        top_level: bool = False,
    ) -> list[JobRecord]:
        raise NotImplementedError("a job's process on a Dask worker cannot read the store")

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        raise NotImplementedError("a job's process on a Dask worker cannot read the store")

    def read_records(
        self,
        job_id: int,
        *,
        streams: Iterable[str] | None = None,
        remove: bool = False,
    ) -> list[StreamRow]:
        raise NotImplementedError("a job's process on a Dask worker cannot read the store")

    def remove_records(self, job_id: int, seqs: Iterable[int]) -> set[int]:
        raise NotImplementedError("a job's process on a Dask worker cannot read the store")

    def delete_jobs(self, job_ids: Sequence[int]) -> None:
        raise NotImplementedError("a job's process on a Dask worker cannot delete jobs")

    def hold(self, key: str, until: float) -> None:
        self._send((HOLD, key, until))  # paces the session's other jobs from now on

    def held_until(self, key: str) -> float | None:
        return None  # holds live in the session's store, which this process cannot read


def become_job_process(sock: socket.socket) -> NoReturn:
    """Run in a process just forked by the fork server, on ``sock`` to the worker: get ready,
    wait for a job (the end of the socket instead: retired, or the worker is gone), prepare
    everything, wait for the go-ahead, run the call, exit."""
    code = 70
    try:
        os.setpgid(0, 0)
        _close_inherited(sock.fileno())
        _reset_signals()
        lifeline = _Lifeline.start_unless_the_kernel_watches()
        imported = set(sys.modules)
        runner = _Runner(sock)
        try:
            protocol.send(sock, (HELLO, os.getpid()))
            _warm_up()
            spec: RemoteCall = runner.next(JOB)[1]
            # All of this overlaps with the job's claim: after the go-ahead, only the call runs.
            outbox = _Outbox(sock)
            run = _prepare(outbox, spec)
            runner.next(GO)
        except OSError:
            _runner_gone()  # retired unused, or the worker went away
        if lifeline is not None:
            lifeline.arm(sock)
        try:
            run()
        finally:
            # What the job imported: the fork server imports it too, for the next jobs.
            outbox.close((MODULES, sorted(set(sys.modules) - imported)))
        sock.shutdown(socket.SHUT_WR)  # the runner need not wait for this process's teardown
        code = 0
    except BaseException:  # the job process must never return into the fork server
        traceback.print_exc()
    finally:
        os._exit(code)


def _close_inherited(keep: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)


class _Runner:
    """The runner's messages, one at a time; its end closing ends this process."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._frames = Frames()
        self._waiting: list[Message] = []

    def next(self, verb: str) -> Message:
        """The next message, which must be ``verb``."""
        while not self._waiting:
            self._waiting = self._frames.feed(self._sock.recv(1 << 16) or _runner_gone())
        message = self._waiting.pop(0)
        if message[0] != verb:
            raise RuntimeError(f"expected {verb!r} from the runner, got {message[0]!r}")
        return message


def _runner_gone() -> NoReturn:
    os.killpg(0, signal.SIGKILL)  # with whatever the job started
    os._exit(70)


class _Lifeline(threading.Thread):
    """Kills the job's process group once the runner's end of the socket closes (its worker
    died). Started while the process waits for a job, so arming it after the go-ahead costs
    the call nothing; the runner sends nothing after the go-ahead."""

    def __init__(self) -> None:
        super().__init__(name="asjob-lifeline", daemon=True)
        self._armed = threading.Event()
        self._sock: socket.socket | None = None

    @classmethod
    def start_unless_the_kernel_watches(cls) -> _Lifeline | None:
        """On Linux the kernel kills this process when the fork server dies, and the server
        kills its job processes' groups when the worker dies: no thread needed (a thread per
        job costs more than the job's own work, for a short one)."""
        parent = os.getppid()
        if _PRCTL is not None and _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0:
            if os.getppid() != parent:  # the server died before the kernel was told
                _runner_gone()
            return None
        lifeline = cls()
        lifeline.start()
        return lifeline

    def arm(self, sock: socket.socket) -> None:
        self._sock = sock
        self._armed.set()

    def run(self) -> None:
        self._armed.wait()
        assert self._sock is not None
        with contextlib.suppress(OSError):
            while self._sock.recv(1 << 16):
                pass
        _runner_gone()


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl: Callable[[int, int], int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PR_SET_PDEATHSIG = 1
_PRCTL = _load_prctl()  # looked up once, in the fork server


class _Outbox:
    """The job's messages to the runner, from any of the job's threads.

    From the outcome on they are held, and sent in one write with the last message, which the
    runner takes as the end of the job's messages: it wakes once for the job's end instead of
    once per message, and need not wait for this process to close its end. What a thread of
    the job sends after that last message is dropped (the process is about to exit)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._held: list[bytes] | None = None  # None until the outcome
        self._closed = False

    def send(self, message: Message) -> None:
        data = protocol.frame(message)
        with self._lock:
            if self._closed:
                return
            if self._held is None and message[0] != OUTCOME:
                self._sock.sendall(data)
                return
            if self._held is None:
                self._held = []
            self._held.append(data)

    def close(self, last: Message) -> None:
        """Send what is held and ``last``, the job's last message."""
        with self._lock:
            self._closed = True
            self._sock.sendall(b"".join([*(self._held or []), protocol.frame(last)]))


def _prepare(outbox: _Outbox, spec: RemoteCall) -> Callable[[], None]:
    """Everything but the call itself: what runs it, once the go-ahead comes."""
    store = RelayStore(outbox.send)
    try:
        call = loads_call(spec.payload)
    except BaseException as exc:  # e.g. the function's module is missing here
        failure = encode_failure(exc)
        return lambda: _failed(store, spec.job_id, failure)
    if os.path.isdir(spec.working_directory):
        os.chdir(spec.working_directory)
    writer = writers.JobWriter(spec.job_id, store_sink(store, spec.job_id))
    writers.bind_process(writer)
    apply_log_levels(spec.log_levels)
    # The whole process belongs to the job: threads it starts see its context too.
    context.bind_process_context(call.context)

    def run() -> None:
        run_call(store, spec.job_id, call, writer)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream must not fail the job
                stream.flush()

    return run


_WARM_UP_CALL = dumps_call(Call(int), channel=Channel.LOCAL)


def _warm_up() -> None:
    """Do, while no job is here, what does not depend on the job, and once what does.

    The process was just forked: the first use of each object the job's path touches copies
    the page it lives on (reference counts are writes), which doubled the time from a job's
    arrival to its outcome. A trial run of that path on a call of ``int()``, whose messages go
    nowhere and which sets nothing process-wide, moves those copies off the job's time.
    Capturing the process's output is the same for every job: it is installed here for good.
    """
    try:
        capture.install_exclusive()
        sent: list[Message] = []
        store = RelayStore(sent.append)
        call = loads_call(_WARM_UP_CALL)
        writer = writers.JobWriter(0, store_sink(store, 0))
        output = [(OUTPUT, writer.encode_output(call.invoke()))]
        transition(store, 0, JobState.Completed, records=output)
        protocol.frame(sent[-1])
    except Exception:  # only ever a saving: the job's own run does it all again
        pass


def _failed(store: RelayStore, job_id: int, failure: bytes) -> None:
    store.compare_and_set_state(job_id, frozenset(), JobState.Failed, reason=failure)
