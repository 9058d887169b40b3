"""A Dask worker's end of its fork server (:mod:`asjob.worker.dask_forkserver`), and the job
processes it keeps ready.

One per worker process, started by the first job. It asks the server for job processes ahead
of time, each on a socket of its own, so a job takes one that is already up and waiting: no
fork, and no round trip to the server, between a task starting and its call running. The one a
job took is replaced once that job has ended (at once only if none is left waiting). A reader
thread routes the server's reports (each process's pid, then how it ended) to them. If the
server dies, its processes die with it and are reported ended; the next job starts a new one.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .protocol import Frames, frame

READY = 2  # job processes kept waiting: enough for jobs that start one after another
START_WAIT_S = 30.0
_ASJOB_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOTSTRAP = (
    f"import sys; sys.path.insert(0, {_ASJOB_ROOT!r}); "
    "from asjob.worker.dask_forkserver import main; main()"
)
_SERVER_FD = 3


@dataclass
class JobProcess:
    """A process the fork server forked for a job, and this worker's end of its socket."""

    sock: socket.socket
    started: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    pid: int | None = None
    status: int | None = None  # its wait status, once reaped (None if unknown)
    error: str | None = None


class Spawner:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._sock: socket.socket | None = None
        self._server_pid: int | None = None
        self._processes: dict[str, JobProcess] = {}  # by token, until reaped
        self._ready: collections.deque[JobProcess] = collections.deque()
        self._coming = 0  # asked for, not yet reported started

    def take(self) -> JobProcess:
        """A job process, ready for its job (or, failing that, one whose ``error`` says why)."""
        deadline = time.monotonic() + START_WAIT_S
        with self._lock:
            while not self._ready:
                if not self._coming:
                    self._ask(1)  # (starting a new server if the last one died)
                left = deadline - time.monotonic()
                if left <= 0:
                    return self._failed("the fork server did not start a job process in time")
                self._lock.wait(left)
            process = self._ready.popleft()
            if not self._ready:  # jobs are starting faster than they end: keep up now
                self._ask(READY - self._coming)
            return process

    def refill(self) -> None:
        """Ask for the job processes taken since the last call. Called once a job has ended:
        forking a replacement while it starts would compete with it for the CPU."""
        with self._lock:
            self._ask(READY - len(self._ready) - self._coming)

    def preload(self, modules: list[str]) -> None:
        """Have the server import ``modules``; the waiting processes, which lack them, retire."""
        with self._lock:
            with contextlib.suppress(OSError):
                self._server().sendall(frame(("preload", modules)))
            while self._ready:
                self._ready.popleft().sock.close()  # it sees the end of its socket and exits
            self._ask(READY - self._coming)

    def _ask(self, count: int) -> None:
        for _ in range(max(0, count)):
            ours, theirs = socket.socketpair()
            token = uuid.uuid4().hex
            self._processes[token] = JobProcess(ours)
            self._coming += 1
            try:
                with theirs:
                    socket.send_fds(self._server(), [frame(("fork", token))], [theirs.fileno()])
            except OSError as exc:
                self._report(("exited", token, None, None, f"the fork server failed: {exc}"))

    def _failed(self, why: str) -> JobProcess:
        process = JobProcess(socket.socket())
        process.error = why
        process.sock.close()
        return process

    def _server(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        ours, theirs = socket.socketpair()
        try:
            # posix_spawn, not fork: the worker is multi-threaded. Only the server gets its end
            # (dup2 makes it fd 3 there): a process spawned meanwhile elsewhere in the worker
            # must not hold it, or the server's death would go unnoticed.
            self._server_pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-c", _BOOTSTRAP, str(_SERVER_FD)],
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, theirs.fileno(), _SERVER_FD),
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                ],
                setsid=True,
            )
        finally:
            theirs.close()
        ours.sendall(frame(("init", list(sys.path))))
        self._sock = ours
        threading.Thread(
            target=self._read, args=(ours,), name="asjob-dask-forkserver", daemon=True
        ).start()
        return ours

    def _read(self, sock: socket.socket) -> None:
        frames = Frames()
        while True:
            try:
                data = sock.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                self._server_lost(sock)
                return
            for message in frames.feed(data):
                with self._lock:
                    self._report(message)

    def _report(self, message: tuple[Any, ...]) -> None:
        """Apply a report of the server (with the lock held)."""
        verb, token = message[0], message[1]
        process = self._processes.get(token)
        if process is None:
            return
        if verb == "started":
            process.pid = message[2]
            self._coming -= 1
            self._ready.append(process)
            process.started.set()
            self._lock.notify_all()
            return
        # ("exited", token, pid, wait status, why it never started)
        del self._processes[token]
        process.status, process.error = message[3], message[4]
        if process in self._ready:
            self._ready.remove(process)  # died waiting: never hand it out
        if not process.started.is_set():
            self._coming -= 1
            self._ready.append(process)  # a taker learns why from its error
            process.started.set()
            self._lock.notify_all()
        process.exited.set()

    def _server_lost(self, sock: socket.socket) -> None:
        with self._lock:
            if self._sock is sock:
                self._sock = None
            orphans, self._processes = self._processes, {}
            self._ready.clear()
            self._coming = 0
            pid, self._server_pid = self._server_pid, None
            for process in orphans.values():
                process.error = process.error or "the fork server of this worker ended"
                process.sock.close()
                process.started.set()
                process.exited.set()
            self._lock.notify_all()
        sock.close()
        if pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # it has closed its end: it is exiting


_spawner = Spawner()


def fork_server() -> Spawner:
    """This worker process's fork server (its process starts with the first job)."""
    return _spawner
