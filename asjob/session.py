"""The session: this interpreter's view of its jobs.

Each interpreter that starts jobs is a session with an id recorded on its jobs. The session owns
the store handle, the kinds it has started jobs with (and so their workers and fork server), the
throttles, and one condition variable that every job end of this session notifies, so waiting
for in-session jobs needs no polling. When the interpreter exits, the session stops its jobs that
are still running and not detached, so no worker outlives it.
"""

from __future__ import annotations

import atexit
import importlib
import sys
import threading
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psutil

from .errors import AsJobError, BackendUnavailableError, InvalidJobStateError
from .store import Store, open_store
from .store.base import JobRecord
from .throttle import Throttle

if TYPE_CHECKING:
    from .job import Job
    from .kinds.base import Kind

# kind name -> (module, class, the extra that provides its packages)
KINDS: dict[str, tuple[str, str, str | None]] = {
    "process": ("asjob.kinds.process", "ProcessKind", None),
    "thread": ("asjob.kinds.thread", "ThreadKind", None),
    "dask": ("asjob.kinds.dask", "DaskKind", "dask"),
}
# Kinds whose detached jobs keep their outcome where they run (a cluster) until a session
# collects it: a session that did not start one adopts it (see Session.is_live).
REMOTE_KINDS = frozenset({"dask"})
KEEP_FINISHED = 1024
"""How many reported job ends a session holds before it drops those of jobs no kind watches."""


class Session:
    def __init__(self, store: Store) -> None:
        self.id = uuid.uuid4().hex
        self.store = store
        self.live_outputs: dict[tuple[int, int], Any] = {}
        self._changed = threading.Condition()
        self._generation = 0
        self._finished: set[int] = set()
        self._keep_finished = KEEP_FINISHED
        self._kinds: dict[str, Kind] = {}
        self._kinds_lock = threading.Lock()
        self._throttles: weakref.WeakKeyDictionary[Any, Throttle] = weakref.WeakKeyDictionary()
        self._throttle_of: dict[int, Throttle] = {}
        self._handles: weakref.WeakValueDictionary[int, Job[Any]] = weakref.WeakValueDictionary()
        self._remote: dict[int, str] = {}  # detached jobs of remote kinds: id -> kind name
        self._closed = False
        # With the pid, what tells this process from a later one that reuses its pid.
        self.process_started = psutil.Process().create_time()

    def __repr__(self) -> str:
        return f"<Session {self.id} store={self.store!r}>"

    # -- kinds -------------------------------------------------------------------------------

    def kind(self, name: str) -> Kind:
        """The session's instance of the kind called ``name``, created on first use."""
        known = self._kinds.get(name)  # without the lock: every start asks
        if known is not None:
            return known
        with self._kinds_lock:
            if name in self._kinds:
                return self._kinds[name]
            if name not in KINDS:
                raise ValueError(f"unknown kind {name!r}: expected one of {', '.join(KINDS)}")
            module_name, class_name, extra = KINDS[name]
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"the {name!r} kind needs packages that are not installed ({exc.name}): "
                    f"pip install 'asjob[{extra}]'"
                ) from None
            kind: Kind = getattr(module, class_name)(self)
            self._kinds[name] = kind
            return kind

    def add_kind(self, kind: Kind) -> Kind:
        """Use a kind instance under its name (a kind object passed as ``kind=``).

        A kind object with a ``bind(session)`` method only names where jobs run (``DaskKind(
        address)``): it is bound to this session's own instance of its kind, which is the one
        consulted for stops and liveness.
        """
        bind = getattr(kind, "bind", None)
        if callable(bind):
            bound: Kind = bind(self)
            return bound
        with self._kinds_lock:
            return self._kinds.setdefault(kind.name, kind)

    def is_live(self, job_id: int) -> bool:
        """Whether this session runs or watches the job (and will be told when it ends).

        A detached job of a remote kind that this session did not start is adopted here: its
        kind starts watching it (if no live process does), so its end is learned from the
        cluster it runs on.
        """
        if any(kind.is_live(job_id) for kind in list(self._kinds.values())):
            return True
        remote = self._remote.get(job_id)
        if remote is None:
            return False
        try:
            kind = self.kind(remote)
        except AsJobError:
            return False  # e.g. this process lacks the kind's packages: the store is all it has
        adopt = getattr(kind, "adopt", None)
        return bool(adopt(job_id)) if callable(adopt) else False

    # -- job ends ----------------------------------------------------------------------------

    def job_finished(self, job_id: int) -> None:
        """A kind's report that job ``job_id`` ended (or will never start)."""
        with self._changed:
            self._finished.add(job_id)
            if len(self._finished) > self._keep_finished:
                self._drop_unwatched_ends()
            self._generation += 1
            self._changed.notify_all()
        throttle = self._throttle_of.pop(job_id, None)
        if throttle is not None:
            throttle.release(job_id)

    def knows_finished(self, job_id: int) -> bool:
        """Whether a kind has reported the job's end; asked only while a kind watches it."""
        return job_id in self._finished

    def _drop_unwatched_ends(self) -> None:
        """Forget the ends of jobs no kind watches any more (called with ``_changed`` held).

        :meth:`knows_finished` only bridges the moment between a kind's report and the job
        leaving the kind; a report can also come after a remove forgot the job (a worker's
        exit follows its outcome). Without this, a long-lived session would keep an id for
        every job it ever ran.

        Kinds' ``is_live`` take their own locks (the process kind's asks the thread kind's),
        inside ``_changed``: no kind may call :meth:`job_finished` holding one of them."""
        kinds = list(self._kinds.values())
        self._finished = {i for i in self._finished if any(k.is_live(i) for k in kinds)}
        self._keep_finished = max(KEEP_FINISHED, 2 * len(self._finished))

    @property
    def generation(self) -> int:
        return self._generation

    def wait_for_change(self, seen: int, timeout: float) -> None:
        """Block until a job of this session ends after generation ``seen``, or ``timeout``."""
        with self._changed:
            if self._generation == seen:
                self._changed.wait(timeout)

    # -- throttles and handles ---------------------------------------------------------------

    def throttle(self, owner: Any, limit: int) -> Throttle:
        throttle = self._throttles.get(owner)
        if throttle is None or throttle.limit != limit:
            throttle = self._throttles[owner] = Throttle(limit)
        return throttle

    def bind_throttle(self, job_id: int, throttle: Throttle) -> None:
        self._throttle_of[job_id] = throttle

    def cancel_queued(self, job_id: int) -> None:
        throttle = self._throttle_of.get(job_id)
        if throttle is not None and throttle.owns(job_id):
            self.job_finished(job_id)

    def handle(self, record: JobRecord) -> Job[Any]:
        """The one :class:`~asjob.job.Job` object of this session for ``record``."""
        from .job import Job

        job = self._handles.get(record.id)
        if job is None:
            job = Job(self, record)
            self._handles[record.id] = job
            if record.kind in REMOTE_KINDS and record.detached and not record.finished:
                self._remote[record.id] = record.kind
        return job

    def forget(self, job_ids: list[int]) -> None:
        """Drop what this session holds on removed jobs."""
        # A copy to look through (one atomic step): running thread jobs add to it meanwhile.
        for key in [k for k in self.live_outputs.copy() if k[0] in job_ids]:
            self.live_outputs.pop(key, None)
        for job_id in job_ids:
            self._handles.pop(job_id, None)
            self._remote.pop(job_id, None)
            self._finished.discard(job_id)

    def has_detached_running(self) -> bool:
        return any(r.detached and not r.finished for r in self.store.list_jobs(session_id=self.id))

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop this session's running jobs that are not detached, then release the kinds."""
        if self._closed:
            return
        self._closed = True
        from .verbs import stop_job

        doomed = [
            r.id
            for r in self.store.list_jobs(session_id=self.id)
            if not r.finished and not r.detached and r.parent_id is None
        ]
        try:
            stop_job(doomed, session=self)
        finally:
            for kind in list(self._kinds.values()):
                kind.close()


_current: Session | None = None
_current_lock = threading.Lock()
# Set while a process must not open a session: the fork server all its life (re-running the
# caller's script, whose asjob calls are the caller's own work; importing modules to preload),
# and a worker until it has loaded its job's call (see asjob.worker.process_main).
_refusal: Callable[[], BaseException] | None = None


def refuse_sessions(
    refusal: Callable[[], BaseException] | None,
) -> Callable[[], BaseException] | None:
    """Make :func:`current_session` raise what ``refusal`` makes from now on (``None``: stop
    refusing); return the refusal this replaces."""
    global _refusal
    previous, _refusal = _refusal, refusal
    return previous


def current_session() -> Session:
    """This interpreter's session, opening the default store on first use."""
    global _current
    if _refusal is not None:
        raise _refusal()
    with _current_lock:
        if _current is None:
            _current = Session(open_store())
        return _current


def use_store(store: Store) -> Session:
    """Start a new session on ``store`` (ending the current one, whose jobs are stopped).

    For applications that keep their own store, and for tests (a
    :class:`~asjob.store.MemoryStore` with the thread kind).
    """
    global _current
    with _current_lock:
        previous, _current = _current, Session(store)
        session = _current
    if previous is not None:
        previous.close()
    return session


def close_at_exit(session: Session | None) -> None:
    """Close ``session`` as the interpreter exits. What stops it (a store gone bad, a cluster
    that does not answer) is said in one line, not a traceback."""
    if session is not None:
        try:
            session.close()
        except AsJobError as exc:
            print(f"asjob: could not stop this session's jobs at exit: {exc}", file=sys.stderr)


def _close_at_exit() -> None:
    close_at_exit(_current)


atexit.register(_close_at_exit)


def ensure_open(session: Session) -> None:
    if session._closed:
        raise InvalidJobStateError("this session has ended: it cannot start jobs")
