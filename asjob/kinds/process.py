"""The ``process`` kind (the default): one worker process per job, forked from a fork server.

::

    caller thread ──"start"──► ForkServerClient ══socket══► fork server ──job──► spare worker
                                   ▲ reader thread: "started" → job Running (pid recorded),
                                   │                            then "go" to the worker
                                   │                "finished" → session.job_finished
                                   │                "exited"   → the worker is gone
    stop_job ── SIGKILL the worker's process group (and any descendant) ── wait for "exited"

The fork server is started on the first job, with the caller's ``sys.path``, its ``__main__``
and every module it has imported so far; modules imported later are sent along with the next
start, so the server keeps up and forks stay cheap.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from .. import plugins
from ..call import Call
from ..errors import BackendUnavailableError, JobFailedError, WorkerLostError
from ..failures import encode_failure
from ..states import JobState, transition
from ..store.base import JobRecord
from ..worker import protocol
from ..worker.forking import check_import_limit, kill_tree
from ..worker.log_levels import caller_log_levels
from ..worker.payload import Channel, dumps_call
from .base import LaunchOptions
from .thread import ThreadKind

if TYPE_CHECKING:
    from ..session import Session

STOP_WAIT_S = 5.0
_ASJOB_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class _Worker:
    job_id: int
    started: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None
    # The job's context, alive while its worker runs: the session's token broker serves a
    # worker only the contexts alive here (held weakly there), and continues the job with it
    # if the worker hands the job off (a detached worker never does).
    context: Any = None
    handed_off: bool = False
    detached: bool = False


@dataclass(frozen=True)
class PackedCall:
    """A call ready for a worker: its pickle, and its context as the live object."""

    payload: bytes
    context: Any


def _caller_sys_path() -> list[str]:
    """This process's ``sys.path``, a relative entry made absolute from its working directory
    now (the server's is another; if this one is gone, the entry is sent as it is)."""
    try:
        here = os.getcwd()
    except FileNotFoundError:
        return list(sys.path)
    return [entry if not entry else os.path.join(here, entry) for entry in sys.path]


def _importable_modules() -> list[str]:
    return [
        name
        for name, module in list(sys.modules.items())
        if name not in ("__main__", "__mp_main__") and getattr(module, "__file__", None)
    ]


class ForkServerClient:
    """The session's end of the socket to its fork server."""

    def __init__(self, session: Session, on_handed_off: Callable[[_Worker], None]) -> None:
        self._session = session
        self._on_handed_off = on_handed_off
        self._lock = threading.Lock()
        # The reader thread answers "started" with "go" while callers send starts.
        self._send_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._server_pid: int | None = None
        self._sent_modules: set[str] = set()
        self._modules_seen = 0  # len(sys.modules) when last compared with what was sent
        self.workers: dict[int, _Worker] = {}

    def _ensure_server(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        store_path = self._session.store.path
        assert store_path is not None, "checked by ProcessKind.prepare"
        ours, theirs = socket.socketpair()
        bootstrap = (
            f"import sys; sys.path.insert(0, {_ASJOB_ROOT!r}); "
            "from asjob.worker.server import main; main()"
        )
        # posix_spawn rather than Popen: a server that outlives this session (serving detached
        # jobs) is meant to, and Popen would warn about it at exit. Its own session keeps a
        # terminal's Ctrl-C away from it; it learns of our exit from the socket instead.
        theirs.set_inheritable(True)
        try:
            self._server_pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-c", bootstrap, str(theirs.fileno())],
                os.environ,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
                setsid=True,
            )
        finally:
            theirs.close()
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        modules = _importable_modules()
        self._sent_modules = set(modules)
        protocol.send(
            ours,
            (
                "init",
                {
                    "sys_path": _caller_sys_path(),
                    "store": store_path,
                    "main_name": getattr(spec, "name", None),
                    "main_path": getattr(main, "__file__", None),
                    "argv": list(sys.argv),
                    "modules": modules,
                },
            ),
        )
        self._sock = ours
        threading.Thread(
            target=self._read, args=(ours,), name="asjob-fork-server-reader", daemon=True
        ).start()
        return ours

    def start(self, job_id: int, packed: PackedCall, options: LaunchOptions) -> _Worker:
        worker = _Worker(
            job_id,
            context=packed.context,
            detached=options.detached,
        )
        session_host = None if options.detached else (os.getpid(), self._session.process_started)
        with self._lock:
            sock = self._ensure_server()
            self.workers[job_id] = worker
            # A start need not walk the thousand entries of sys.modules when their number has
            # not changed (a miss only costs a worker an import, never a wrong result).
            new_modules = []
            if len(sys.modules) != self._modules_seen:
                self._modules_seen = len(sys.modules)
                new_modules = [m for m in _importable_modules() if m not in self._sent_modules]
            if new_modules:
                self._sent_modules.update(new_modules)
                with self._send_lock:  # with sys.path as it is now: they may come from a new entry
                    protocol.send(sock, ("preload", new_modules, _caller_sys_path()))
            message = (
                "start",
                job_id,
                packed.payload,
                options.detached,
                dict(os.environ),
                options.working_directory,
                caller_log_levels(),
                session_host,
            )
            with self._send_lock:
                protocol.send(sock, message)
        return worker

    # -- the reader thread ------------------------------------------------------------------

    def _read(self, sock: socket.socket) -> None:
        reader = protocol.Reader(sock)
        while True:
            try:
                messages = reader.receive()
            except OSError:
                messages = None
            if messages is None:
                self._server_lost(sock)
                return
            for message in messages:
                self._dispatch(message)

    def _dispatch(self, message: tuple[Any, ...]) -> None:
        verb, job_id = message[0], message[1]
        worker = self.workers.get(job_id)
        store = self._session.store
        if verb == "started":
            pid, forked_at = message[2], message[3]
            # Running (with the worker's pid) before start_job returns and before the worker
            # runs: it waits for our "go". A job stopped meanwhile gets "no go" and never runs.
            running = transition(
                store, job_id, JobState.Running, host_pid=pid, host_started=forked_at
            )
            with self._send_lock:
                if self._sock is not None:
                    with contextlib.suppress(OSError):
                        protocol.send(self._sock, ("go", job_id, running))
            if worker is not None:
                worker.pid = pid
                worker.started.set()
        elif verb == "start_failed":
            error = JobFailedError(message[2], job_id)
            transition(store, job_id, JobState.Failed, reason=encode_failure(error))
            self._ended(job_id, worker)
        elif verb == "finished":
            self._session.job_finished(job_id)
        elif verb == "handed_off":
            if worker is not None:
                worker.handed_off = True
                self._on_handed_off(worker)
        elif verb == "exited":
            handed_off = worker is not None and worker.handed_off
            self._ended(job_id, worker, finished=not handed_off)

    def _ended(self, job_id: int, worker: _Worker | None, finished: bool = True) -> None:
        with self._lock:
            self.workers.pop(job_id, None)
        if worker is not None:
            worker.started.set()
            worker.exited.set()
        if finished:
            self._session.job_finished(job_id)

    def _server_lost(self, sock: socket.socket) -> None:
        with self._lock:
            # close() hung up first: the server lives on, serving the detached workers.
            hung_up = self._sock is not sock
            if self._sock is sock:
                self._sock = None
            orphans = list(self.workers.items())
            self.workers.clear()
        if not hung_up:
            sock.close()  # the server's end is gone; close() will not see this one
        for job_id, worker in orphans:
            if hung_up:
                self._ended(job_id, worker)
            elif worker.handed_off or worker.detached:
                # The job goes on without the server: in a thread here (handed off), or in
                # its own worker, which records its outcome in the store itself (detached).
                self._ended(job_id, worker, finished=False)
            else:
                self._lose(job_id, worker)

    def _lose(self, job_id: int, worker: _Worker) -> None:
        """The fork server died under a running job: its worker would run on unwatched (no
        one left to stop it, or to learn how it ended), so it is killed and the job failed."""
        if worker.pid is not None:
            kill_tree(worker.pid)
        error = WorkerLostError(
            f"job {job_id}: the fork server ended, and the job's worker with it", job_id
        )
        transition(self._session.store, job_id, JobState.Failed, reason=encode_failure(error))
        self._ended(job_id, worker)

    def close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
            pid, self._server_pid = self._server_pid, None
        if sock is not None:
            # shutdown, not just close: the reader thread is blocked in recv on this socket,
            # and a close alone would neither wake it nor let the server see the end.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if pid is not None and not self._session.has_detached_running():
            # It exits once its workers are gone: reap it, so no process outlives the session.
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        break
                    time.sleep(0.002)
                    continue
                break


def process_gone(pid: int, started: float | None) -> bool:
    """Whether process ``pid`` (created at ``started``) has ended; a zombie has."""
    try:
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - started) > 1.0:
            return True  # the pid now belongs to another process
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        # Includes the window between a death and its reaping where /proc reads fail (ESRCH).
        return True


class ProcessKind:
    name = "process"
    job_type_name = "BackgroundJob"
    runs_on_creation = False

    def __init__(self, session: Session) -> None:
        self._session = session
        self._client = ForkServerClient(session, self._continue_here)

    def prepare(self, call: Call, options: LaunchOptions) -> PackedCall:
        check_import_limit()
        if self._session.store.path is None:
            raise BackendUnavailableError(
                "the process kind needs a store its worker processes can open "
                "(a SQLite store); this session uses an in-memory store: use kind='thread'"
            )
        return PackedCall(dumps_call(call, channel=Channel.LOCAL), call.context)

    def launch(
        self, record: JobRecord, prepared: Any, options: LaunchOptions, wait: bool = True
    ) -> None:
        worker = self._client.start(record.id, prepared, options)
        if wait:
            worker.started.wait()

    def _threads(self) -> ThreadKind:
        threads = self._session.kind("thread")
        assert isinstance(threads, ThreadKind)
        return threads

    def _continue_here(self, worker: _Worker) -> None:
        """The worker handed its job off: continue the job in a thread of this session, from
        the resume data the worker recorded, with the job's own context."""
        store = self._session.store
        job_id = worker.job_id
        try:
            record = store.get_job(job_id)
            if record.state is not JobState.Running or not record.resume_data:
                return  # stopped meanwhile
            call = plugins.continuation_call(record.resume_data, worker.context)
            self._threads().continue_job(record, call)
        except Exception as exc:
            transition(store, job_id, JobState.Failed, reason=encode_failure(exc))
            self._session.job_finished(job_id)

    def stop(self, record: JobRecord) -> None:
        if self._threads().continues(record.id):
            self._threads().stop(record)
            return
        worker = self._client.workers.get(record.id)
        if worker is not None:
            worker.started.wait(STOP_WAIT_S)
            pid = worker.pid
        else:
            pid = record.host_pid
        if pid is None:
            return
        kill_tree(pid)
        if worker is not None:
            worker.exited.wait(STOP_WAIT_S)
            return
        deadline = time.monotonic() + STOP_WAIT_S
        while not process_gone(pid, record.host_started) and time.monotonic() < deadline:
            time.sleep(0.005)

    def is_live(self, job_id: int) -> bool:
        return job_id in self._client.workers or self._threads().continues(job_id)

    def close(self) -> None:
        self._client.close()
