"""Job states and the one table of transitions between them.

Every state change of every job goes through :func:`transition`, a compare-and-set in the store:
the change happens only if the job's current state is one the table allows to move to the target.
Two parties racing (a worker finishing while a caller stops it) therefore cannot both win.

::

    NotStarted ──► Running ──► Completed
        │            │   ├───► Failed
        │            │   └───► Stopping ──► Stopped
        └────────────┴───────────────────► Stopped / Failed
    (Blocked, Suspending, Suspended, Disconnected, AtBreakpoint: PowerShell states a job may
     pass through and return to Running from.)
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store.base import Store


class JobState(str, enum.Enum):
    """The PowerShell job states; ``str(state)`` is the bare name, e.g. ``"Completed"``."""

    NotStarted = "NotStarted"
    Running = "Running"
    Completed = "Completed"
    Failed = "Failed"
    Stopped = "Stopped"
    Blocked = "Blocked"
    Suspended = "Suspended"
    Disconnected = "Disconnected"
    Suspending = "Suspending"
    Stopping = "Stopping"
    AtBreakpoint = "AtBreakpoint"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        """Completed, Failed or Stopped: the job will never change state again."""
        return self in FINISHED

    @classmethod
    def parse(cls, name: object) -> JobState:
        """A state from its name in any case (as PowerShell reads ``-State completed``);
        ``ValueError`` naming the states for anything else."""
        if isinstance(name, JobState):
            return name
        for state in cls:
            if str(name).lower() == state.value.lower():
                return state
        names = ", ".join(state.value for state in cls)
        raise ValueError(f"{name!r} is not a job state ({names})")


FINISHED = frozenset({JobState.Completed, JobState.Failed, JobState.Stopped})

_S = JobState
# target state -> the states a job may be in to move there
ALLOWED_SOURCES: dict[JobState, frozenset[JobState]] = {
    _S.NotStarted: frozenset(),
    _S.Running: frozenset(
        {_S.NotStarted, _S.Blocked, _S.Suspended, _S.Disconnected, _S.AtBreakpoint}
    ),
    _S.Completed: frozenset({_S.Running}),
    _S.Failed: frozenset(
        {
            _S.NotStarted,
            _S.Running,
            _S.Blocked,
            _S.Suspending,
            _S.Suspended,
            _S.Disconnected,
            _S.AtBreakpoint,
        }
    ),
    _S.Stopping: frozenset(
        {_S.Running, _S.Blocked, _S.Suspending, _S.Suspended, _S.Disconnected, _S.AtBreakpoint}
    ),
    _S.Stopped: frozenset(
        {
            _S.NotStarted,
            _S.Stopping,
            _S.Running,
            _S.Blocked,
            _S.Suspending,
            _S.Suspended,
            _S.Disconnected,
            _S.AtBreakpoint,
        }
    ),
    _S.Blocked: frozenset({_S.Running}),
    _S.Suspending: frozenset({_S.Running}),
    _S.Suspended: frozenset({_S.Suspending}),
    _S.Disconnected: frozenset({_S.Running}),
    _S.AtBreakpoint: frozenset({_S.Running}),
}


def can_transition(current: JobState, target: JobState) -> bool:
    """Whether the table allows ``current -> target``."""
    return current in ALLOWED_SOURCES[target]


def transition(store: Store, job_id: int, target: JobState, **fields: Any) -> bool:
    """Move a job to ``target`` if the table allows it from its current state.

    ``fields`` are written in the same atomic step (``end_time``, ``reason``, ``host_pid``...).
    Returns whether this call made the change; ``False`` means another party got there first or
    the job is in a state that cannot move to ``target``.
    """
    return store.compare_and_set_state(job_id, ALLOWED_SOURCES[target], target, **fields)
