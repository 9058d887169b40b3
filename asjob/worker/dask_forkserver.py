"""The fork server of a Dask worker: a small single-threaded process that forks job processes.

Forking the Dask worker itself would copy a large multi-threaded process: slowly (copy-on-write
faults in both processes, for every job) and unsafely (locks held by its other threads stay
held in the child). This server is started by the worker's first job, imports what jobs need
as they report it, and forks job processes from a clean, small interpreter, ahead of time (the
worker keeps a few waiting: :mod:`asjob.worker.dask_spawner`).

::

    worker ──("fork", token) + a socket for the process (SCM_RIGHTS)──► server ──fork──► job
           ◄──("started", token, pid)                                                  process
           ◄──("exited", token, pid, wait status, None) ◄── SIGCHLD ──────────────────────┘
           ──("preload", [module names])──► imported here, so later forks have them

When the worker goes away (its end of the socket closes), the server kills its job processes'
groups and exits: a job never outlives the worker that supervised it.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import importlib
import os
import pickle
import select
import signal
import socket
import struct
import sys
import traceback
from typing import Any

_HEADER = struct.Struct("!I")
_MAX_FDS = 64


def frame(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


class Frames:
    """Reassembles frames from bytes as they arrive."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            messages.append(pickle.loads(bytes(self._buffer[_HEADER.size : end])))
            del self._buffer[:end]
        return messages


class DaskForkServer:
    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock
        self._frames = Frames()
        self._fds: collections.deque[int] = collections.deque()
        self._children: dict[int, str] = {}  # pid -> token
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when jobs stop

    def serve(self) -> None:
        while self._sock is not None or self._children:
            watched = [self._wake_r] + ([self._sock] if self._sock is not None else [])
            try:
                readable, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            if self._wake_r in readable:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            self._reap()
            if self._sock is not None and self._sock in readable:
                self._read()

    def _read(self) -> None:
        assert self._sock is not None
        try:
            data, fds, _flags, _addr = socket.recv_fds(self._sock, 1 << 16, _MAX_FDS)
        except OSError:
            data, fds = b"", []
        self._fds.extend(fds)
        if not data:
            self._worker_gone()
            return
        for message in self._frames.feed(data):
            self._handle(message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        verb = message[0]
        if verb == "init":
            sys.path[:] = message[1]
            self._preload(["asjob.worker.dask_child"])
            from .. import plugins

            plugins.provider_packages()  # read once here, not in every job process
        elif verb == "preload":
            self._preload(message[1])
        elif verb == "fork":
            self._fork(message[1], self._fds.popleft())

    @staticmethod
    def _preload(modules: list[str]) -> None:
        for name in modules:
            if name not in sys.modules:
                try:
                    importlib.import_module(name)
                except BaseException:  # preloading is an optimisation only
                    continue
        # Objects that exist now are shared with every job process: keep the collector from
        # touching (and so copying) their pages in each one.
        gc.freeze()

    def _fork(self, token: str, fd: int) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(fd)
            self._send(("exited", token, None, None, f"cannot fork a job process: {exc}"))
            return
        if pid == 0:
            self._become_job(socket.socket(fileno=fd))
        os.close(fd)
        self._children[pid] = token
        self._send(("started", token, pid))

    def _become_job(self, sock: socket.socket) -> None:
        code = 70
        try:
            signal.set_wakeup_fd(-1)
            from .dask_child import become_job_process

            become_job_process(sock)
        except BaseException:  # the job process must never return into the server loop
            traceback.print_exc()
        finally:
            os._exit(code)

    def _reap(self) -> None:
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            token = self._children.pop(pid, None)
            if token is not None:
                self._send(("exited", token, pid, status, None))

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._sock is not None:
            try:
                self._sock.sendall(frame(message))
            except OSError:
                self._worker_gone()

    def _worker_gone(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for pid in list(self._children):
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)


def main() -> None:
    DaskForkServer(socket.socket(fileno=int(sys.argv[1]))).serve()


if __name__ == "__main__":
    main()
