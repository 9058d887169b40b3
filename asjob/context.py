"""The cloud context: what a job needs to reach the cloud, captured when the job starts.

PowerShell jobs run in other processes, so the connection must travel with them
(``-AzContext``). A :class:`Context` is an immutable snapshot; a job takes the explicit
``context=`` or else the current one at start, and later changes never reach it. Inside the job,
:func:`current_context` returns that snapshot.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

_lock = threading.Lock()
_current: Any = None
_job_context: ContextVar[Any] = ContextVar("asjob_job_context", default=None)


def get_context() -> Any:
    """The current context of this process (``None`` if there is none)."""
    with _lock:
        return _current


def set_context(context: Any) -> None:
    """Make ``context`` current for jobs started from now on."""
    global _current
    with _lock:
        _current = context


def resolve_context(explicit: Any) -> Any:
    """The context a starting job takes: an explicit one wins, else the current one."""
    return explicit if explicit is not None else get_context()


def current_context() -> Any:
    """Inside a job: the context it started with. Outside: the current context.

    Raises :class:`LookupError` when there is none.
    """
    context = _job_context.get()
    if context is None:
        context = get_context()
    if context is None:
        raise LookupError("no context: connect first (e.g. asjob.providers.azure.connect_azure)")
    return context


def bind_job_context(context: Any) -> None:
    """Make ``context`` what :func:`current_context` returns in this job's thread."""
    _job_context.set(context)
