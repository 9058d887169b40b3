"""Threads a thread job starts belong to the job, as every thread of a worker process does.

A thread job runs in a thread of the caller's process, and what makes code part of it there
lives in context variables: the writer that ``print``, logging and warnings go to (and whose
``stopping`` ends asjob's waits), and the context ``current_context()`` returns. Before Python
3.14 a new thread does not inherit context variables, so a thread the job starts — an Azure
``LROPoller`` polls in one — would write to the caller's terminal and poll on after a stop. At a
thread's start inside a thread job, the new thread gets a copy of its starter's context instead.

A thread pool's threads are left out: each runs the tasks of whoever submits them, not only of
the job whose submission happened to start it.
"""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import thread as futures_thread
from typing import Any

from . import writer as writers

_original_start = threading.Thread.start


def install() -> None:
    """Make threads started inside a thread job run in the job (idempotent)."""
    if threading.Thread.start is not _start:
        threading.Thread.start = _start  # type: ignore[method-assign]


def _start(self: threading.Thread) -> None:
    if writers.thread_writer() is not None and not _is_pool_worker(self):
        inherited = contextvars.copy_context()
        run = self.run

        def run_in_job() -> Any:
            return inherited.run(run)

        self.run = run_in_job  # type: ignore[method-assign]
    _original_start(self)


def _is_pool_worker(thread: threading.Thread) -> bool:
    return getattr(thread, "_target", None) is futures_thread._worker
