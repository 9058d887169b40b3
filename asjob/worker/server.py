"""The fork server: a pre-loaded interpreter that forks one worker process per job.

Starting a fresh interpreter per job costs seconds once the SDK is imported; forking one that
has already imported the caller's modules costs milliseconds and shares their memory.

::

    session ──"start"──► fork server ──job, then "go"──► spare worker (own process group,
       ▲                    │  ▲  ▲                      forked ahead of need)
       │                    │  │  └──── "done" ───────── outcome written to the store
       │                    │  │        "handed off" ─── the session continues the job
       │                    │  └─────── SIGCHLD ───────── exited
       └─"started"/"finished"/"handed_off"/"exited" (with the exit status)

The server is the workers' parent, so it alone learns how each one really ended: a worker that
exits without having recorded an outcome (killed, crashed, ``os._exit``) is marked Failed with
:class:`~asjob.errors.WorkerLostError` naming the exit code or signal. When the session goes
away (its end of the socket closes), the server kills the session's non-detached workers,
serves the detached ones until they end, then exits.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from .. import plugins
from ..errors import JobNotFoundError, WorkerLostError
from ..failures import encode_failure
from ..session import refuse_sessions
from ..states import JobState, transition
from ..store.sqlite import SQLiteStore
from . import protocol
from .forking import (
    ForkingServer,
    describe_exit,
    kill_group,
    kill_tree,
    preload,
    release_standard_streams,
    standard_output_discarded,
)
from .main_module import is_refused_start, recreate_caller_main, starts_refused
from .process_main import SAYS_HANDED_OFF, serve_one_job


@dataclass(frozen=True)
class _Spare:
    """A forked worker waiting for its job: its pipes, and when it was forked."""

    pid: int
    job_w: int
    done_r: int
    forked_at: float


def _quiet_about_refused_starts(args: threading.ExceptHookArgs) -> None:
    """A thread the caller's re-run script started, stopped where it starts a job here: that
    is the script's main work, not an error to print on the caller's terminal."""
    if not is_refused_start(args.exc_value):
        threading.__excepthook__(args)


class ForkServer(ForkingServer):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self._reader = protocol.Reader(sock)
        self._store: SQLiteStore | None = None
        self._store_path = ""
        self._spare: _Spare | None = None
        # read end of each worker's "outcome recorded" pipe -> job id
        self._done_pipes: dict[int, int] = {}
        # job id -> write end of the pipe its worker waits on before it runs
        self._go_pipes: dict[int, int] = {}
        # jobs whose workers handed the rest to the session: their exit is no loss
        self._handed_off: set[int] = set()

    # -- set-up ------------------------------------------------------------------------------

    def _initialise(self, settings: dict[str, Any]) -> None:
        # No job starts here, nor in a worker before it has loaded its call: a module that
        # starts jobs when imported would otherwise make servers that make servers.
        refuse_sessions(starts_refused)
        threading.excepthook = _quiet_about_refused_starts
        sys.path[:] = settings["sys_path"]
        self._store = SQLiteStore(settings["store"], initialise=False)
        self._store_path = self._store.path
        with standard_output_discarded():
            recreate_caller_main(
                settings.get("main_path"), settings.get("main_name"), settings.get("argv", [])
            )
            self._preload(settings["modules"])
        self._fork_spare()

    @staticmethod
    def _preload(modules: list[str]) -> None:
        preload(modules)
        plugins.warm_up_imported_providers()  # once here, not in every worker
        gc.freeze()  # what the warm-up made is shared with the workers too

    # -- the session's messages --------------------------------------------------------------

    def receive(self, sock: socket.socket) -> list[tuple[Any, ...]] | None:
        return self._reader.receive()

    def handle(self, message: tuple[Any, ...]) -> None:
        verb = message[0]
        if verb == "init":
            self._initialise(message[1])
        elif verb == "preload":
            self._retire_spare()
            sys.path[:] = message[2]  # the caller's now: it may have added the modules' place
            with standard_output_discarded():
                self._preload(message[1])
            self._fork_spare()
        elif verb == "start":
            self._start(*message[1:])
        elif verb == "go":
            self._go(message[1], message[2])

    # -- workers -----------------------------------------------------------------------------
    #
    # One spare worker is kept forked and waiting, so a job's start costs no fork: the spare
    # gets the job over its pipe, the session is told "started", and the next spare is forked
    # while the session marks the job Running. The pipe then carries "go" (the job is Running)
    # or "no go" (it was stopped first); the worker's "done" pipe says its outcome is recorded.

    def _fork_spare(self) -> None:
        job_r, job_w = os.pipe()
        done_r, done_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (job_r, job_w, done_r, done_w):
                os.close(fd)
            return  # no spare: the next start forks on demand
        if pid == 0:
            os.close(job_w)
            os.close(done_r)
            self._become_worker(job_r, done_w)
        os.close(job_r)
        os.close(done_w)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the child: whichever runs first wins the race
        self._children[pid] = None  # no job yet
        # Now is the worker's creation time, to well within the second that pid-reuse checks
        # allow (asking /proc for it costs more than the rest of the start).
        self._spare = _Spare(pid, job_w, done_r, time.time())

    def _retire_spare(self) -> None:
        """The spare predates modules just preloaded: replace it by one that has them."""
        if self._spare is not None:
            kill_group(self._spare.pid)
            os.close(self._spare.job_w)
            os.close(self._spare.done_r)
            self._spare = None

    def _start(self, job_id: int, *job: Any) -> None:
        if self._spare is None:
            self._fork_spare()
        spare, self._spare = self._spare, None
        if spare is None:
            self.send(("start_failed", job_id, "cannot start a worker process (fork failed)"))
            return
        detached = job[1]
        try:
            os.write(spare.job_w, protocol.frame(("job", job_id, *job)))
        except OSError as exc:  # the spare died (killed from outside): report, use a new one
            os.close(spare.job_w)
            os.close(spare.done_r)
            self.send(("start_failed", job_id, f"the worker process was lost: {exc}"))
            return
        self._children[spare.pid] = (job_id, detached)
        self._done_pipes[spare.done_r] = job_id
        self._go_pipes[job_id] = spare.job_w
        self.send(("started", job_id, spare.pid, spare.forked_at))
        self._fork_spare()

    def _go(self, job_id: int, run: bool) -> None:
        job_w = self._go_pipes.pop(job_id, None)
        if job_w is not None:
            with contextlib.suppress(OSError):  # the worker may have been killed meanwhile
                os.write(job_w, protocol.frame(("go", run)))
            os.close(job_w)

    def _become_worker(self, job_r: int, done_w: int) -> None:
        code = 70
        try:
            os.setpgid(0, 0)
            self.leave_server()
            open_fds = [*self._done_pipes, *self._go_pipes.values()]
            if self._spare is not None:
                open_fds += [self._spare.job_w, self._spare.done_r]
            for fd in open_fds:
                os.close(fd)
            code = serve_one_job(self._store_path, job_r, done_w)
        except BaseException:  # the worker must never return into the server loop
            traceback.print_exc()
        finally:
            os._exit(code)

    def extra_fds(self) -> list[int]:
        return list(self._done_pipes)

    def fd_ready(self, fd: int) -> None:
        job_id = self._done_pipes.pop(fd)
        try:
            said = os.read(fd, 1)
        finally:
            os.close(fd)
        if said == SAYS_HANDED_OFF:
            self._handed_off.add(job_id)
            self.send(("handed_off", job_id))
        elif said:
            self.send(("finished", job_id))

    def child_exited(self, pid: int, key: Any, status: int) -> None:
        if key is None:
            if self._spare is not None and self._spare.pid == pid:
                self._retire_spare()  # killed from outside while waiting: fork another
                self._fork_spare()
            return
        job_id, _detached = key
        # What the worker said before it exited may still be unread (it wrote, then exited,
        # between this loop's select and its reaping): read it first, it cannot block now.
        for fd in [fd for fd, job in self._done_pipes.items() if job == job_id]:
            self.fd_ready(fd)
        if job_id in self._handed_off:
            self._handed_off.discard(job_id)
        else:
            self._record_exit(job_id, pid, status)
        self.send(("exited", job_id, pid, status))

    def _record_exit(self, job_id: int, pid: int, status: int) -> None:
        assert self._store is not None
        try:
            record = self._store.get_job(job_id)
            if record.finished:
                return
            # It ended without an outcome (stopped, killed, crashed): what it started is
            # orphaned. Those in its process group go now (the group outlives its leader).
            kill_group(pid)
            if record.state is JobState.Stopping:
                transition(self._store, job_id, JobState.Stopped)
                return
            lost = WorkerLostError(
                f"job {job_id}: its worker {describe_exit(pid, status)} without reporting "
                "an outcome",
                job_id,
            )
            transition(self._store, job_id, JobState.Failed, reason=encode_failure(lost))
        except JobNotFoundError:
            pass  # removed meanwhile (a receive with auto-remove, a forced remove): nothing to do
        except Exception as exc:  # a store error must not end the server
            print(
                f"asjob: could not record how the worker of job {job_id} ended: {exc}",
                file=sys.stderr,
            )

    def owner_gone(self) -> None:
        """The session ended: stop its jobs that are not detached (no orphan workers). The
        detached ones are served until they end; they and this server outlive the session."""
        release_standard_streams()
        self._retire_spare()
        for job_id in list(self._go_pipes):
            self._go(job_id, False)  # started, but the session never said go: it never will
            if self._store is not None:
                transition(self._store, job_id, JobState.Stopped)
        for pid, key in list(self._children.items()):
            if key is None:
                continue  # the spare, already killed
            job_id, detached = key
            if detached:
                continue
            if self._store is not None:
                transition(self._store, job_id, JobState.Stopping)
            kill_tree(pid)  # with what it started, even outside its process group


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    ForkServer(sock).serve()


if __name__ == "__main__":
    main()
