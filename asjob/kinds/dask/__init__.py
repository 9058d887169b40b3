"""The ``dask`` kind: jobs run on a Dask distributed cluster (PowerShell's remote jobs).

The job object stays local and results come back to the caller (``Invoke-Command -AsJob``);
``location`` names the worker running the job; a job started with ``detach=True`` keeps its
result on the cluster until any process sharing the store receives it.

::

    kind="dask"                      the scheduler at $ASJOB_DASK_SCHEDULER
    kind=DaskKind("tcp://host:8786") the scheduler named

On the worker each job runs in a process of its own, so a stop kills the job and not the
worker (:mod:`asjob.worker.dask_runner`); what it reports comes back through the cluster and
the session writes it to the store (:mod:`.backend`), so every verb works as for local jobs.
A job's call, arguments and context travel inside the task as bytes: never in a task key,
the workers' environment or the cluster's logs. Workers keep their own environment and
directory (the caller's directory is used if it exists there). Functions travel by reference
(workers import them), those of the caller's ``__main__`` by value.

A running job holds one thread of its worker, so the cluster's threads bound how many jobs run
at once. A worker lost while running a job fails the job with
:class:`~asjob.errors.WorkerLostError`: Dask would run the task again, asjob never runs a call
twice.

This module imports no Dask: a missing ``dask`` extra is reported when a ``DaskKind`` is made.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ...call import Call
from ...errors import BackendUnavailableError
from ...store.base import JobRecord
from ...worker.log_levels import caller_log_levels
from ..base import LaunchOptions

if TYPE_CHECKING:
    from ...session import Session
    from .backend import DaskBackend, PreparedCall

SCHEDULER_ENV = "ASJOB_DASK_SCHEDULER"


def require_dask() -> None:
    """Raise :class:`BackendUnavailableError` (saying what to install) without Dask."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        missing = exc.name or "dask"
        raise BackendUnavailableError(
            f"the 'dask' kind needs the {missing!r} package, which is not installed: "
            "pip install 'asjob[dask]'"
        ) from None


class DaskKind:
    """Run jobs on the Dask cluster whose scheduler is at ``address``.

    ``DaskKind("tcp://10.0.0.5:8786")`` is passed as ``kind=``; without an address the
    scheduler is ``$ASJOB_DASK_SCHEDULER``, as for ``kind="dask"``. Every ``DaskKind`` used
    in a session shares the session's connections, so one session can use several clusters.
    """

    name = "dask"
    job_type_name = "RemoteJob"
    runs_on_creation = False

    def __init__(self, address: str | Session | None = None) -> None:
        require_dask()
        self._backend: DaskBackend | None = None
        self.address: str | None = None
        if isinstance(address, str) or address is None:
            self.address = address
        else:  # the session's own instance, made by Session.kind("dask")
            from .backend import DaskBackend

            self._backend = DaskBackend(address)

    def __repr__(self) -> str:
        return f"DaskKind({self.address!r})" if self.address else "DaskKind()"

    def __reduce__(self) -> tuple[Any, ...]:
        return DaskKind, (self.address,)

    def bind(self, session: Session) -> DaskKind:
        """This kind for ``session`` (what ``Session.add_kind`` uses)."""
        canonical = session.kind(self.name)
        assert isinstance(canonical, DaskKind)
        bound = DaskKind.__new__(DaskKind)
        bound.address = self.address
        bound._backend = canonical._backend
        return bound

    def _work(self) -> DaskBackend:
        if self._backend is None:
            raise RuntimeError(f"{self!r} is not bound to a session: pass it as kind=...")
        return self._backend

    # -- the Kind contract -------------------------------------------------------------------

    def prepare(self, call: Call, options: LaunchOptions) -> PreparedCall:
        from .backend import PreparedCall
        from .packing import pack_call

        address = self.address or os.environ.get(SCHEDULER_ENV)
        if not address:
            raise ValueError(
                f"the 'dask' kind needs a scheduler address: set {SCHEDULER_ENV} or pass "
                "kind=DaskKind('tcp://host:8786')"
            )
        payload = pack_call(call)
        self._work().cluster(address)  # unreachable: fail now, before the job exists
        return PreparedCall(address, payload, caller_log_levels())

    def launch(
        self, record: JobRecord, prepared: Any, options: LaunchOptions, wait: bool = True
    ) -> None:
        self._work().launch(record, prepared, options)

    def stop(self, record: JobRecord) -> None:
        self._work().stop(record)

    def is_live(self, job_id: int) -> bool:
        return self._backend is not None and self._backend.is_live(job_id)

    def adopt(self, job_id: int) -> bool:
        """Watch a detached job another, exited, process started (see ``Session.is_live``)."""
        return self._backend is not None and self._backend.adopt(job_id)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


__all__ = ["SCHEDULER_ENV", "DaskKind"]
