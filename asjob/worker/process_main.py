"""What a forked worker process does: wait for its job, run it, record the outcome."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from .. import capture, context, session
from .. import writer as writers
from ..failures import encode_failure
from ..states import JobState, transition
from ..store.sqlite import SQLiteStore
from . import protocol
from .batching import BatchingSink
from .forking import release_standard_streams
from .log_levels import apply_log_levels
from .main_module import explain_missing
from .payload import loads_call
from .runner import run_call

# What a worker says on its "done" pipe.
SAYS_DONE = b"d"
SAYS_HANDED_OFF = b"h"


def run_worker(
    store: SQLiteStore,
    job_id: int,
    payload: bytes,
    log_levels: dict[str, int],
    session_host: tuple[int, float] | None = None,
) -> bool:
    """Run job ``job_id`` (already marked Running by the session) in this process. Returns
    whether the job was handed off to the session (``session_host``), rather than ended."""
    writer = writers.JobWriter(job_id, BatchingSink(store, job_id))
    writer.session_host = session_host
    writers.bind_process(writer)
    apply_log_levels(log_levels)
    try:
        call = loads_call(payload)
    except BaseException as exc:
        failure = explain_missing(exc)
        transition(store, job_id, JobState.Failed, reason=encode_failure(failure))
        return False
    session.refuse_sessions(None)  # the call is loaded: the job itself may start jobs
    # Threads the job starts do not inherit its context variable; in a worker process the
    # whole process belongs to the job, so its context is the process's too.
    context.bind_process_context(call.context)
    capture.capture_descriptors(writer)
    run_call(store, job_id, call, writer)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return writer.handed_off


class _PipeReader:
    """Messages from the fork server, read from this worker's job pipe."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._frames = protocol.Frames()
        self._pending: list[tuple[Any, ...]] = []

    def next(self) -> tuple[Any, ...]:
        while not self._pending:
            data = os.read(self._fd, 1 << 16)
            if not data:
                os._exit(0)  # the server went away before this process had a job to run
            self._pending.extend(self._frames.feed(data))
        return self._pending.pop(0)


def serve_one_job(store_path: str, job_r: int, done_w: int) -> int:
    """A spare worker's life: wait for a job, then for "go" (the session has marked it
    Running), run it, say "done" once its outcome is recorded (or "handed off" once the
    session has the rest of it). Returns the exit code."""
    capture.install_exclusive()  # needs no job: done while waiting for one
    server = _PipeReader(job_r)
    _, job_id, payload, detached, environ, cwd, log_levels, session_host = server.next()
    if detached:
        release_standard_streams()
    if environ != os.environ:
        os.environ.clear()
        os.environ.update(environ)
    if cwd != _working_directory():
        os.chdir(cwd)
    # The store is opened only once there is a job: a connection opened while waiting made
    # no job faster and each of a hundred workers a megabyte larger.
    store = SQLiteStore(store_path, initialise=False)
    _, run = server.next()
    if not run:
        return 0  # stopped before it began: nothing to run
    handed_off = run_worker(store, job_id, payload, log_levels, session_host)
    # The outcome is in the store: the session may go on without waiting for this process
    # to be torn down and reaped.
    os.write(done_w, SAYS_HANDED_OFF if handed_off else SAYS_DONE)
    return 0


def _working_directory() -> str | None:
    """This process's working directory; ``None`` if it has been deleted (the server started
    in a directory removed since)."""
    try:
        return os.getcwd()
    except FileNotFoundError:
        return None
