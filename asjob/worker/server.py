"""The fork server: a pre-loaded interpreter that forks one worker process per job.

Starting a fresh interpreter per job costs seconds once the SDK is imported; forking one that
has already imported the caller's modules costs milliseconds and shares their memory.

::

    session ──"start"──► fork server ──fork──► worker (own process group)
       ▲                    │   ▲                 │ writes state, streams, result
       │                    │   └── SIGCHLD ◄─────┘ to the store, then exits
       └──"started"/"exited"┘
              (exit status)

The server is the workers' parent, so it alone learns how each one really ended: a worker that
exits without having recorded an outcome (killed, crashed, ``os._exit``) is marked Failed with
:class:`~asjob.errors.WorkerLostError` naming the exit code or signal. When the session goes
away (its end of the socket closes), the server kills the session's non-detached workers,
serves the detached ones until they end, then exits.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import traceback
from typing import Any

from ..errors import WorkerLostError
from ..failures import encode_failure
from ..states import JobState, transition
from ..store.sqlite import SQLiteStore
from . import protocol
from .forking import ForkingServer, describe_exit, kill_group, preload, release_standard_streams
from .process_main import run_worker


class ForkServer(ForkingServer):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self._reader = protocol.Reader(sock)
        self._store: SQLiteStore | None = None
        # read end of each worker's "outcome recorded" pipe -> job id
        self._done_pipes: dict[int, int] = {}
        # job id -> write end of the pipe its worker waits on before it runs
        self._go_pipes: dict[int, int] = {}

    # -- set-up ------------------------------------------------------------------------------

    def _initialise(self, settings: dict[str, Any]) -> None:
        from .. import plugins

        sys.path[:] = settings["sys_path"]
        self._store = SQLiteStore(settings["store"], initialise=False)
        self._fix_up_main(settings.get("main_path"), settings.get("main_name"))
        plugins.provider_packages()  # read once here, not in every worker
        preload(settings["modules"])

    @staticmethod
    def _fix_up_main(path: str | None, name: str | None) -> None:
        # As multiprocessing's spawn does: the caller's __main__ becomes __mp_main__ here (its
        # `if __name__ == "__main__"` block does not run), so its functions resolve by reference.
        from multiprocessing import spawn

        try:
            if name:
                spawn._fixup_main_from_name(name)  # type: ignore[attr-defined]
            elif path:
                spawn._fixup_main_from_path(path)  # type: ignore[attr-defined]
        except BaseException:  # a main that cannot load is the job's problem
            traceback.print_exc()

    # -- the session's messages --------------------------------------------------------------

    def receive(self, sock: socket.socket) -> list[tuple[Any, ...]] | None:
        return self._reader.receive()

    def handle(self, message: tuple[Any, ...]) -> None:
        verb = message[0]
        if verb == "init":
            self._initialise(message[1])
        elif verb == "preload":
            preload(message[1])
        elif verb == "start":
            self._start(*message[1:])
        elif verb == "go":
            self._go(message[1], message[2])

    # -- workers -----------------------------------------------------------------------------

    def _start(
        self,
        job_id: int,
        payload: bytes,
        detached: bool,
        environ: dict[str, str],
        cwd: str,
        log_levels: dict[str, int],
    ) -> None:
        go_r, go_w = os.pipe()
        done_r, done_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (go_r, go_w, done_r, done_w):
                os.close(fd)
            self.send(("start_failed", job_id, f"cannot start a worker process: {exc}"))
            return
        if pid == 0:
            os.close(go_w)
            os.close(done_r)
            self._become_worker(job_id, payload, detached, environ, cwd, log_levels, go_r, done_w)
        os.close(go_r)
        os.close(done_w)
        self._done_pipes[done_r] = job_id
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the child: whichever runs first wins the race
        self._children[pid] = (job_id, detached)
        # The session marks the job Running (with this pid) and then says "go": so start_job
        # returns a Running job, the worker cannot record an outcome before that, and this
        # process, whose pages every fork makes copy-on-write again, writes nothing.
        self._go_pipes[job_id] = go_w
        # Now is the worker's creation time, to well within the second that pid-reuse checks
        # allow (asking /proc for it costs more than the rest of the start).
        self.send(("started", job_id, pid, time.time()))

    def _go(self, job_id: int, run: bool) -> None:
        go_w = self._go_pipes.pop(job_id, None)
        if go_w is not None:
            with contextlib.suppress(OSError):  # the worker may have been killed meanwhile
                os.write(go_w, b"g" if run else b"n")
            os.close(go_w)

    def _become_worker(
        self,
        job_id: int,
        payload: bytes,
        detached: bool,
        environ: dict[str, str],
        cwd: str,
        log_levels: dict[str, int],
        go: int,
        done: int,
    ) -> None:
        code = 70
        try:
            os.setpgid(0, 0)
            if detached:
                release_standard_streams()
            self.leave_server()
            for fd in (*self._done_pipes, *self._go_pipes.values()):
                os.close(fd)
            if environ != os.environ:
                os.environ.clear()
                os.environ.update(environ)
            if cwd != os.getcwd():
                os.chdir(cwd)
            assert self._store is not None
            if os.read(go, 1) == b"g":
                code = run_worker(self._store.path, job_id, payload, log_levels)
                # The outcome is in the store: the session may go on without waiting for
                # this process to be torn down and reaped.
                os.write(done, b"d")
            else:
                code = 0  # stopped before it began: nothing to run
        except BaseException:  # the worker must never return into the server loop
            traceback.print_exc()
        finally:
            os._exit(code)

    def extra_fds(self) -> list[int]:
        return list(self._done_pipes)

    def fd_ready(self, fd: int) -> None:
        job_id = self._done_pipes.pop(fd)
        try:
            recorded = os.read(fd, 1) == b"d"
        finally:
            os.close(fd)
        if recorded:
            self.send(("finished", job_id))

    def child_exited(self, pid: int, key: Any, status: int) -> None:
        job_id, _detached = key
        self._record_exit(job_id, pid, status)
        self.send(("exited", job_id, pid, status))

    def _record_exit(self, job_id: int, pid: int, status: int) -> None:
        assert self._store is not None
        try:
            record = self._store.get_job(job_id)
            if record.finished:
                return
            if record.state is JobState.Stopping:
                transition(self._store, job_id, JobState.Stopped)
                return
            lost = WorkerLostError(
                f"job {job_id}: its worker {describe_exit(pid, status)} without reporting "
                "an outcome",
                job_id,
            )
            transition(self._store, job_id, JobState.Failed, reason=encode_failure(lost))
        except Exception:  # a removed job or a store error must not end the server
            traceback.print_exc()

    def owner_gone(self) -> None:
        """The session ended: stop its jobs that are not detached (no orphan workers). The
        detached ones are served until they end; they and this server outlive the session."""
        release_standard_streams()
        for job_id in list(self._go_pipes):
            self._go(job_id, False)  # started, but the session never said go: it never will
            if self._store is not None:
                transition(self._store, job_id, JobState.Stopped)
        for pid, (job_id, detached) in list(self._children.items()):
            if detached:
                continue
            if self._store is not None:
                transition(self._store, job_id, JobState.Stopping)
            kill_group(pid)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    ForkServer(sock).serve()


if __name__ == "__main__":
    main()
