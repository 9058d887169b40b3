"""What a freshly forked worker process does: claim its job, run it, record the outcome."""

from __future__ import annotations

import contextlib
import logging
import sys

from .. import capture, context
from .. import writer as writers
from ..failures import encode_failure
from ..states import JobState, transition
from ..store.sqlite import SQLiteStore
from .payload import loads_call
from .runner import run_call, store_sink


def apply_log_levels(levels: dict[str, int]) -> None:
    """Give this process the caller's logger levels, so a job logs what the caller would see."""
    for name, level in levels.items():
        logging.getLogger(name or None).setLevel(level)


def run_worker(store_path: str, job_id: int, payload: bytes, log_levels: dict[str, int]) -> int:
    """Run job ``job_id`` (already marked Running by the fork server) in this process; return
    the exit code for the fork server."""
    store = SQLiteStore(store_path, initialise=False)
    writer = writers.JobWriter(job_id, store_sink(store, job_id))
    writers.bind_process(writer)
    capture.install_exclusive()
    apply_log_levels(log_levels)
    try:
        call = loads_call(payload)
    except BaseException as exc:
        transition(store, job_id, JobState.Failed, reason=encode_failure(exc))
        return 0
    # Threads the job starts do not inherit its context variable; in a worker process the
    # whole process belongs to the job, so its context is the process's too.
    context.bind_process_context(call.context)
    run_call(store, job_id, call, writer)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return 0
