"""The ``thread`` kind: the call runs in a thread of the calling process.

Results are the very objects the call produced (no pickling), and logging records reach the
caller's handlers as they happen. A thread cannot be killed: a stop sets the job's ``stopping``
flag, marks the job Stopped at once and abandons the thread; whatever it does afterwards is
dropped (its outcome's compare-and-set finds the job Stopped).

Another process (the CLI, a later CI step) stops a thread job by marking it Stopped in the
store; it cannot reach the flag. So while this kind runs jobs, a watcher reads their states
every :data:`WATCH_INTERVAL_S` and raises the flag of a job that has finished elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Any

from ..call import Call
from ..states import JobState, transition
from ..store.base import JobRecord
from ..worker.batching import BatchingSink
from ..worker.runner import run_call
from ..writer import JobWriter
from .base import LaunchOptions

if TYPE_CHECKING:
    from ..session import Session


WATCH_INTERVAL_S = 0.2
"""How often running thread jobs' states are read, for stops made by other processes."""


class ThreadKind:
    name = "thread"
    job_type_name = "ThreadJob"
    runs_on_creation = True

    def __init__(self, session: Session) -> None:
        self._session = session
        self._writers: dict[int, JobWriter] = {}
        self._continued: set[int] = set()  # jobs of other kinds, handed off to this one
        self._lock = threading.Lock()
        self._watching = threading.Condition(self._lock)
        self._watcher: threading.Thread | None = None
        self._closed = False

    def prepare(self, call: Call, options: LaunchOptions) -> Call:
        if options.detached:
            raise ValueError(
                "a thread job cannot be detached: it ends with this interpreter; "
                "use kind='process' for a job that outlives it"
            )
        # Checked only when chosen: each system call gives up the GIL, and a start among a
        # hundred busy job threads waits to get it back each time.
        if options.chosen_directory and os.path.realpath(
            options.working_directory
        ) != os.path.realpath(os.getcwd()):
            raise ValueError(
                "thread jobs share the caller's working directory: "
                f"cannot run one in {options.working_directory!r}; use kind='process'"
            )
        return call

    def launch(
        self, record: JobRecord, prepared: Any, options: LaunchOptions, wait: bool = True
    ) -> None:
        self._launch(record, prepared)

    def continue_job(self, record: JobRecord, call: Call) -> None:
        """Run the rest of a Running job of another kind, whose worker handed it off (see
        :meth:`asjob.writer.JobWriter.hand_off`), as a thread job of this session."""
        with self._lock:
            self._continued.add(record.id)
        self._launch(record, call, resume_recorded=True)

    def continues(self, job_id: int) -> bool:
        """Whether this kind runs the rest of job ``job_id`` (see :meth:`continue_job`)."""
        with self._lock:
            return job_id in self._continued

    def _launch(self, record: JobRecord, call: Call, resume_recorded: bool = False) -> None:
        session = self._session
        writer = JobWriter(
            record.id,
            BatchingSink(session.store, record.id),
            live_outputs=session.live_outputs,
            forward_logs=False,
        )
        writer.resume_recorded = resume_recorded
        with self._lock:
            self._writers[record.id] = writer
            self._ensure_watcher()
        if record.state is JobState.NotStarted and not transition(
            session.store,
            record.id,
            JobState.Running,
            host_pid=os.getpid(),
            host_started=session.process_started,
        ):
            self._finished(record.id)
            return
        thread = threading.Thread(
            target=self._run,
            args=(record.id, call, writer),
            name=f"asjob-thread-job-{record.id}",
            daemon=True,
        )
        thread.start()

    def _run(self, job_id: int, call: Call, writer: JobWriter) -> None:
        try:
            run_call(self._session.store, job_id, call, writer)
        finally:
            self._finished(job_id)

    def _finished(self, job_id: int) -> None:
        with self._lock:
            self._writers.pop(job_id, None)
            self._continued.discard(job_id)
        self._session.job_finished(job_id)

    def stop(self, record: JobRecord) -> None:
        with self._lock:
            writer = self._writers.get(record.id)
        if writer is not None:
            writer.request_stop()

    def is_live(self, job_id: int) -> bool:
        """Whether a thread of this session runs the job and will report its end. A stopped
        job's thread is abandoned: its job is over (or removed), whatever the thread does."""
        with self._lock:
            writer = self._writers.get(job_id)
        return writer is not None and not writer.stopping

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._watching.notify_all()

    # -- stops made by other processes -------------------------------------------------------

    def _ensure_watcher(self) -> None:
        """Start the watcher, or wake it from idling; called with the lock held, the job just
        added. Only the first job after an idle spell wakes it: a burst of starts must not make
        a burst of store reads."""
        if self._watcher is None and not self._closed:
            self._watcher = threading.Thread(
                target=self._watch, name="asjob-thread-job-watcher", daemon=True
            )
            self._watcher.start()
        if len(self._writers) == 1:
            self._watching.notify_all()

    def _watch(self) -> None:
        while True:
            with self._lock:
                while not self._writers and not self._closed:
                    self._watching.wait()  # no job to watch: no store reads either
                if self._closed:
                    return
                watched = dict(self._writers)
            # An unreadable store now: the next round reads it again.
            with contextlib.suppress(Exception):
                self._stop_those_finished_elsewhere(watched)
            with self._lock:
                if not self._closed:
                    self._watching.wait(WATCH_INTERVAL_S)

    def _stop_those_finished_elsewhere(self, watched: dict[int, JobWriter]) -> None:
        states = self._session.store.states(watched)
        for job_id, writer in watched.items():
            state = states.get(job_id)
            # Finished, or gone (removed with force), while its thread still runs.
            if (state is None or state.finished) and not writer.stopping:
                writer.request_stop()
                self._session.job_finished(job_id)
