"""The kind contract: *where* a job's call runs.

A kind gets a prepared call and a fresh NotStarted job record; ``launch`` makes the job Running
(or Failed) and arranges for :meth:`asjob.session.Session.job_finished` to be called when it
ends; ``stop`` makes the work really stop and returns only then. The verbs around it handle the
states (Stopping before ``stop``, Stopped after), so a kind only deals with its workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..call import Call
from ..store.base import JobRecord


@dataclass(frozen=True)
class LaunchOptions:
    working_directory: str
    detached: bool = False
    # Whether the caller chose the directory (else it is the caller's current one).
    chosen_directory: bool = False


class Kind(Protocol):
    name: str
    job_type_name: str
    # True for a kind whose launch starts the work at once in this process (a thread): its
    # jobs are created Running, one store write instead of two. Others mark a job Running
    # once their worker has it.
    runs_on_creation: bool

    def prepare(self, call: Call, options: LaunchOptions) -> Any:
        """Check and pack the call before any record exists: raise ``TypeError``/``ValueError``
        naming what this kind cannot run or send."""

    def launch(
        self, record: JobRecord, prepared: Any, options: LaunchOptions, wait: bool = True
    ) -> None:
        """Start the job. With ``wait``, return once it is Running (or has already ended)."""

    def stop(self, record: JobRecord) -> None:
        """Make the job's work stop; return once it has."""

    def is_live(self, job_id: int) -> bool:
        """Whether this process runs or supervises the job (so it hears when it ends)."""

    def close(self) -> None:
        """The session ends: release workers and servers (jobs were stopped already)."""
