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
import os
import socket
import sys
import traceback
from typing import Any

from .forking import ForkingServer, kill_group, preload
from .protocol import Frames

_MAX_FDS = 64


class DaskForkServer(ForkingServer):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self._frames = Frames()
        self._fds: collections.deque[int] = collections.deque()

    def receive(self, sock: socket.socket) -> list[tuple[Any, ...]] | None:
        # Each "fork" request carries the job's own socket as a passed file descriptor.
        data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, _MAX_FDS)
        self._fds.extend(fds)
        if not data:
            return None
        return self._frames.feed(data)

    def handle(self, message: tuple[Any, ...]) -> None:
        verb = message[0]
        if verb == "init":
            from .. import plugins

            sys.path[:] = message[1]
            plugins.provider_packages()  # read once here, not in every job process
            preload(["asjob.worker.dask_child"])
        elif verb == "preload":
            preload(message[1])
        elif verb == "fork":
            self._fork(message[1], self._fds.popleft())

    def _fork(self, token: str, fd: int) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(fd)
            self.send(("exited", token, None, None, f"cannot fork a job process: {exc}"))
            return
        if pid == 0:
            self._become_job(socket.socket(fileno=fd))
        os.close(fd)
        self._children[pid] = token
        self.send(("started", token, pid))

    def _become_job(self, sock: socket.socket) -> None:
        code = 70
        try:
            self.leave_server()
            for fd in self._fds:
                os.close(fd)
            from .dask_child import become_job_process

            become_job_process(sock)
        except BaseException:  # the job process must never return into the loop
            traceback.print_exc()
        finally:
            os._exit(code)

    def child_exited(self, pid: int, key: Any, status: int) -> None:
        self.send(("exited", key, pid, status, None))

    def owner_gone(self) -> None:
        """The Dask worker went away: a job never outlives the worker that supervised it."""
        for pid in list(self._children):
            kill_group(pid)


def main() -> None:
    DaskForkServer(socket.socket(fileno=int(sys.argv[1]))).serve()


if __name__ == "__main__":
    main()
