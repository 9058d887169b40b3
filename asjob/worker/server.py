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
import gc
import importlib
import os
import select
import signal
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
from .process_main import run_worker


def describe_exit(job_id: int, pid: int, status: int) -> str:
    """How a worker ended, in words, from its wait status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        how = f"was killed by signal {number} ({name})"
    else:
        how = f"exited with code {os.waitstatus_to_exitcode(status)}"
    return f"job {job_id}: its worker process {pid} {how} without reporting an outcome"


class ForkServer:
    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock
        self._reader = protocol.Reader(sock)
        self._children: dict[int, tuple[int, bool]] = {}
        # read end of each worker's "outcome recorded" pipe -> job id
        self._done_pipes: dict[int, int] = {}
        # job id -> write end of the pipe its worker waits on before it runs
        self._go_pipes: dict[int, int] = {}
        self._store: SQLiteStore | None = None
        self._wake_r, wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(wake_w, False)
        self._wake_w = wake_w
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # The session decides when jobs stop; a terminal's Ctrl-C is for the session only.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    # -- set-up ------------------------------------------------------------------------------

    def _initialise(self, settings: dict[str, Any]) -> None:
        sys.path[:] = settings["sys_path"]
        self._store = SQLiteStore(settings["store"], initialise=False)
        self._fix_up_main(settings.get("main_path"), settings.get("main_name"))
        self._preload(settings["modules"])

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
        except BaseException:
            traceback.print_exc()

    @staticmethod
    def _preload(modules: list[str]) -> None:
        from .. import plugins

        for name in modules:
            if name not in sys.modules:
                try:
                    importlib.import_module(name)
                except BaseException:
                    continue
        plugins.provider_packages()
        # Objects that exist now are shared with every worker: keep the collector from
        # touching (and so copying) their pages in each child.
        gc.freeze()

    # -- the loop ----------------------------------------------------------------------------

    def serve(self) -> None:
        while self._sock is not None or self._children:
            watched: list[Any] = [self._wake_r, *self._done_pipes]
            if self._sock is not None:
                watched.append(self._sock)
            try:
                readable, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            if self._wake_r in readable:
                self._drain_wakeups()
            for fd in readable:
                if fd in self._done_pipes:
                    self._outcome_recorded(fd)
            self._reap()
            if self._sock is not None and self._sock in readable:
                self._read_session()

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _read_session(self) -> None:
        assert self._sock is not None
        try:
            messages = self._reader.receive()
        except OSError:
            messages = None
        if messages is None:
            self._session_gone()
            return
        for message in messages:
            self._handle(message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        verb = message[0]
        if verb == "init":
            self._initialise(message[1])
        elif verb == "preload":
            self._preload(message[1])
        elif verb == "start":
            self._start(*message[1:])
        elif verb == "go":
            self._go(message[1], message[2])

    def _send(self, message: tuple[Any, ...]) -> None:
        if self._sock is not None:
            # On an error the session has hung up, but what it sent before (its last "go") may
            # still be unread: the read side ends the session once it has read everything.
            with contextlib.suppress(OSError):
                protocol.send(self._sock, message)

    # -- workers -----------------------------------------------------------------------------

    def _start(self, job_id: int, payload: bytes, detached: bool, environ: dict[str, str],
               cwd: str, log_levels: dict[str, int]) -> None:
        go_r, go_w = os.pipe()
        done_r, done_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in (go_r, go_w, done_r, done_w):
                os.close(fd)
            self._send(("start_failed", job_id, f"cannot start a worker process: {exc}"))
            return
        if pid == 0:
            os.close(go_w)
            os.close(done_r)
            self._become_worker(job_id, payload, detached, environ, cwd, log_levels, go_r,
                                done_w)
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
        self._send(("started", job_id, pid, time.time()))

    def _go(self, job_id: int, run: bool) -> None:
        go_w = self._go_pipes.pop(job_id, None)
        if go_w is not None:
            with contextlib.suppress(OSError):  # the worker may have been killed meanwhile
                os.write(go_w, b"g" if run else b"n")
            os.close(go_w)

    def _become_worker(self, job_id: int, payload: bytes, detached: bool,
                       environ: dict[str, str], cwd: str, log_levels: dict[str, int],
                       go: int, done: int) -> None:
        code = 70
        try:
            os.setpgid(0, 0)
            if detached:
                release_standard_streams()
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            os.close(self._wake_r)
            os.close(self._wake_w)
            if self._sock is not None:
                self._sock.close()
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
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def _outcome_recorded(self, fd: int) -> None:
        job_id = self._done_pipes.pop(fd)
        try:
            recorded = os.read(fd, 1) == b"d"
        finally:
            os.close(fd)
        if recorded:
            self._send(("finished", job_id))

    def _reap(self) -> None:
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job_id, _ = self._children.pop(pid, (None, False))
            if job_id is not None:
                self._record_exit(job_id, pid, status)
                self._send(("exited", job_id, pid, status))

    def _record_exit(self, job_id: int, pid: int, status: int) -> None:
        assert self._store is not None
        try:
            record = self._store.get_job(job_id)
            if record.finished:
                return
            if record.state is JobState.Stopping:
                transition(self._store, job_id, JobState.Stopped)
                return
            lost = WorkerLostError(describe_exit(job_id, pid, status), job_id)
            transition(self._store, job_id, JobState.Failed, reason=encode_failure(lost))
        except Exception:
            traceback.print_exc()

    def _session_gone(self) -> None:
        """The session ended: stop its jobs that are not detached (no orphan workers)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        release_standard_streams()
        assert self._store is not None or not self._children
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


def release_standard_streams() -> None:
    """Point fds 0-2 at /dev/null. The server and detached workers outlive the session, and
    holding its stdout would keep a shell's ``id=$(python start.py)`` or ``| tee`` waiting for
    them. (Python-level output of a job is captured into its streams either way.)"""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def kill_group(pid: int) -> None:
    """SIGKILL a worker's process group (itself and the processes it started)."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    ForkServer(sock).serve()


if __name__ == "__main__":
    main()
