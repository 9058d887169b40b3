"""What both fork servers share: the local kind's (:mod:`asjob.worker.server`) and the one on
each Dask worker (:mod:`asjob.worker.dask_forkserver`).

A fork server is a small single-threaded interpreter with one socket to its owner (a session, a
Dask worker). It imports what jobs need ahead of time, forks one child per job, and, being the
children's parent, is the one that learns how each really ended::

    owner ══socket══► select loop ──fork──► child (its own process group)
                        ▲   │
                        │   └─ owner's messages ─► handle()
                        └─ SIGCHLD (wake-up pipe) ─► waitpid ─► child_exited(pid, key, status)

When the owner goes away (its end of the socket closes) the subclass decides which children to
kill; the loop ends once the owner is gone and no child is left.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import math
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import psutil

from . import protocol


class ForkingServer:
    """The loop; subclasses say what messages mean and what a child's end means."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock
        self._children: dict[int, Any] = {}  # pid -> what the subclass knows it by
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # The owner decides when jobs stop; a terminal's Ctrl-C is for the owner only.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    # -- what subclasses provide -------------------------------------------------------------

    def receive(self, sock: socket.socket) -> list[tuple[Any, ...]] | None:
        """The owner's next messages (``None`` once it has closed its end)."""
        raise NotImplementedError

    def handle(self, message: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def child_exited(self, pid: int, key: Any, status: int) -> None:
        raise NotImplementedError

    def owner_gone(self) -> None:
        """The owner closed its end (the socket is already closed)."""

    def extra_fds(self) -> Iterable[int]:
        """More file descriptors to watch; :meth:`fd_ready` is called when one is readable."""
        return ()

    def fd_ready(self, fd: int) -> None:
        pass

    # -- the loop ----------------------------------------------------------------------------

    def serve(self) -> None:
        while self._sock is not None or self._children:
            extra = list(self.extra_fds())
            watched: list[Any] = [self._wake_r, *extra]
            if self._sock is not None:
                watched.append(self._sock)
            try:
                readable, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
            for fd in readable:
                if fd in extra:
                    self.fd_ready(fd)
            self._reap()
            if self._sock is not None and self._sock in readable:
                self._read_owner()

    def _read_owner(self) -> None:
        assert self._sock is not None
        try:
            messages = self.receive(self._sock)
        except OSError:
            messages = None
        if messages is None:
            self._sock.close()
            self._sock = None
            self.owner_gone()
            return
        for message in messages:
            self.handle(message)

    def _reap(self) -> None:
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self._children:
                self.child_exited(pid, self._children.pop(pid), status)

    def send(self, message: tuple[Any, ...]) -> None:
        """Tell the owner. A failed send is ignored: if the owner has hung up, what it sent
        before (still unread) is read first, and the read side then ends the owner's turn."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                protocol.send(self._sock, message)

    def leave_server(self) -> None:
        """In a freshly forked child: drop what belongs to the server loop."""
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._sock is not None:
            self._sock.close()


IMPORT_LIMIT_ENV = "ASJOB_SCRIPT_RERUN_LIMIT"
DEFAULT_IMPORT_LIMIT_S = 30.0
"""How long a fork server waits for the caller's code: the script's top level when it re-runs
it, or the import of one module (seconds; ``$ASJOB_SCRIPT_RERUN_LIMIT`` overrides it for code
that takes longer)."""


def import_limit() -> float:
    try:
        return max(0.1, float(os.environ.get(IMPORT_LIMIT_ENV, DEFAULT_IMPORT_LIMIT_S)))
    except ValueError:
        return DEFAULT_IMPORT_LIMIT_S


def check_import_limit() -> None:
    """Raise ``ValueError`` naming ``$ASJOB_SCRIPT_RERUN_LIMIT`` if it is set to anything but
    a positive number of seconds (the fork server would use the default instead, unsaid)."""
    text = os.environ.get(IMPORT_LIMIT_ENV)
    if text is None:
        return
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(
            f"${IMPORT_LIMIT_ENV} is {text!r}: set it to a number of seconds, such as 120 "
            f"(or unset it for the default, {DEFAULT_IMPORT_LIMIT_S:.0f})"
        )


class TooSlow(BaseException):
    """Raised in the main thread when a :func:`time_limit` runs out. A BaseException, so that
    the code it interrupts (a module's, a script's) cannot swallow it with ``except Exception``."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TooSlow` in the block if it runs longer than ``seconds``. Only in the main
    thread (signals reach no other); elsewhere the block runs unlimited."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGALRM, _raise_too_slow)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def _raise_too_slow(signum: int, frame: Any) -> None:
    raise TooSlow()


def preload(modules: Iterable[str]) -> None:
    """Import ``modules`` (failures are ignored: preloading only saves work in children). A
    module that blocks on import (on a lock its importer holds, say) is given up after
    :func:`import_limit`: the server must go on serving starts."""
    for name in modules:
        if name not in sys.modules:
            try:
                with time_limit(import_limit()):
                    importlib.import_module(name)
            except BaseException:  # e.g. a module that exits when imported, or too slow
                continue
    # Objects that exist now are shared with every child: keep the collector from touching
    # (and so copying) their pages in each one.
    gc.freeze()


@contextlib.contextmanager
def standard_output_discarded() -> Iterator[None]:
    """Send what is written to fd 1 meanwhile to /dev/null. A fork server re-imports modules
    its owner has imported already, which printed what they print there once; here it would
    only repeat it, into an output that may be a shell's ``id=$(asjob start ...)``."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def describe_exit(pid: int, status: int) -> str:
    """How a child ended, in words, from its wait status: ``process 12 was killed by signal 9
    (SIGKILL)`` or ``process 12 exited with code 3``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        return f"process {pid} was killed by signal {number} ({name})"
    return f"process {pid} exited with code {os.waitstatus_to_exitcode(status)}"


def kill_tree(pid: int) -> None:
    """SIGKILL a worker, its process group, and descendants that left the group."""
    if pid in (os.getpid(), os.getppid()) or pid <= 1:
        return  # a record naming this very process is not a worker's: never kill ourselves
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, 9)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()


def kill_group(pid: int) -> None:
    """SIGKILL a child's process group (itself and the processes it started)."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def release_standard_streams() -> None:
    """Point fds 0-2 at /dev/null: for a process that outlives its owner, holding the owner's
    stdout would keep a shell's ``id=$(python start.py)`` or ``| tee`` waiting for it."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
