"""``@as_job``: calling the decorated function starts a job and returns its :class:`Job`.

Like tenacity's ``@retry``, it works bare (``@as_job``) and with options (``@as_job(kind=...)``),
keeps the function's name, docstring and signature, exposes the undecorated function as
``__wrapped__``, and hangs its extras on the wrapper: ``.map(items)`` fans out into a parent job
with one child job per item.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .call import Call, map_command_text
from .context import resolve_context
from .failures import encode_failure
from .job import Job
from .launching import Prepared, check_start, commit, launch_job, prepare, record_job
from .session import Session, current_session
from .states import JobState, transition
from .store.base import CHILDREN, NewJob
from .throttle import Throttle

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class JobOptions:
    """How the jobs of one decorated function start (the keywords of :func:`as_job`)."""

    name: str | None = None
    kind: Any = "process"
    context: Any = None
    throttle_limit: int | None = None
    detach: bool = False
    working_directory: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if self.throttle_limit is not None and self.throttle_limit < 1:
            raise ValueError(f"throttle_limit must be at least 1, not {self.throttle_limit}")
        if self.throttle_limit is not None and self.detach:
            # The queue of jobs waiting for a slot lives in the starting process; detached jobs
            # outlive it, and those still waiting when it exits would never start.
            raise ValueError(
                "throttle_limit cannot be combined with detach=True: jobs waiting for a slot "
                "would never start once this process exits; start at most N detached jobs at "
                "a time yourself (wait_job(..., any=True)), or keep the starter running"
            )


class AsJobFunction(Generic[P, T]):
    """A function (or bound method) whose calls run as background jobs."""

    def __init__(self, fn: Callable[P, T], options: JobOptions = JobOptions()) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped__ = fn
        self.options = options

    def __repr__(self) -> str:
        return f"<as_job {getattr(self.__wrapped__, '__qualname__', self.__wrapped__)!r}>"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # Decorating a method in a class body: bind like a function would.
        if instance is None:
            return self
        return AsJobFunction(self.__wrapped__.__get__(instance, owner), self.options)

    def _prepare(self, session: Session, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prepared:
        options = self.options
        call = Call(self.__wrapped__, args, kwargs, context=resolve_context(options.context))
        return prepare(
            session,
            call,
            name=options.name,
            kind=options.kind,
            working_directory=options.working_directory,
            detach=options.detach,
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Job[T]:
        session = current_session()
        prepared = self._prepare(session, args, kwargs)
        return commit(session, prepared, throttle=self._throttle(session))

    def _throttle(self, session: Session) -> Throttle | None:
        if self.options.throttle_limit is None:
            return None
        return session.throttle(self.__wrapped__, self.options.throttle_limit)

    def map(self, items: Iterable[Any]) -> Job[list[T]]:
        """Start one child job per item (``fn(item)``) under one parent job.

        Receiving the parent returns the children's results in input order; it is Failed if any
        child failed (receiving raises the first failure, in input order, with
        ``partial_output``), Stopped if it was stopped, else Completed once all have finished.
        """
        session = current_session()
        values = list(items)
        prepared = [self._prepare(session, (item,), {}) for item in values]
        template = prepared[0] if prepared else None
        parent = session.store.create_job(
            NewJob(
                name=self.options.name or "",
                command=map_command_text(self.__wrapped__, values),
                job_type_name=template.job_type_name if template else "BackgroundJob",
                kind=template.kind.name if template else "process",
                session_id=session.id,
                output_mode=CHILDREN,
                detached=self.options.detach,
                host_pid=os.getpid(),
            )
        )
        if not prepared:
            transition(session.store, parent.id, JobState.Running)
            transition(session.store, parent.id, JobState.Completed)
        throttle = self._throttle(session)
        children = [
            record_job(session, child, parent_id=parent.id, position=position, throttle=throttle)
            for position, child in enumerate(prepared)
        ]
        for index, (child, record) in enumerate(zip(prepared, children, strict=True)):
            try:
                launch_job(session, child, record, throttle)
            except BaseException as exc:
                # Failed like the child that could not start: none is left recorded as
                # running, or waiting for a slot, that nothing will launch.
                for unlaunched in children[index + 1 :]:
                    session.cancel_queued(unlaunched.id)
                    transition(
                        session.store, unlaunched.id, JobState.Failed, reason=encode_failure(exc)
                    )
                    session.job_finished(unlaunched.id)
                raise
        handle: Job[list[T]] = session.handle(session.store.get_job(parent.id))
        return handle


def unwrap_job_function(fn: Callable[..., T]) -> Callable[..., T]:
    """The undecorated function of an ``@as_job`` function (so ``start_job`` of one runs the
    function, not a job that starts a job); any other callable as it is."""
    if isinstance(fn, AsJobFunction):
        wrapped: Callable[..., T] = fn.__wrapped__
        return wrapped
    return fn


@overload
def as_job(
    fn: Callable[P, T],
    /,
    *,
    name: str | None = None,
    kind: Any = "process",
    context: Any = None,
    throttle_limit: int | None = None,
    detach: bool = False,
    working_directory: str | os.PathLike[str] | None = None,
) -> AsJobFunction[P, T]: ...


@overload
def as_job(
    *,
    name: str | None = None,
    kind: Any = "process",
    context: Any = None,
    throttle_limit: int | None = None,
    detach: bool = False,
    working_directory: str | os.PathLike[str] | None = None,
) -> Callable[[Callable[P, T]], AsJobFunction[P, T]]: ...


def as_job(
    fn: Callable[P, T] | None = None,
    /,
    *,
    name: str | None = None,
    kind: Any = "process",
    context: Any = None,
    throttle_limit: int | None = None,
    detach: bool = False,
    working_directory: str | os.PathLike[str] | None = None,
) -> Any:
    """Make calls of ``fn`` start background jobs (``@as_job`` or ``@as_job(...)``).

    Also wraps a bound SDK method:
    ``as_job(compute.virtual_machines.begin_create_or_update)(rg, "vm1", params)``.
    An ``@as_job`` function given again is re-decorated: ``as_job(kind="thread")(fn)`` starts
    ``fn``'s undecorated function with the new options.
    ``throttle_limit=N`` runs at most N of this function's jobs at once.
    """

    options = JobOptions(name, kind, context, throttle_limit, detach, working_directory)

    def decorate(function: Callable[P, T]) -> AsJobFunction[P, T]:
        # Decorating a decorated function again gives it these options instead (a job whose
        # work is to start another job is never what was meant).
        function = unwrap_job_function(function)
        check_start(function, kind, context, starter="as_job")
        return AsJobFunction(function, options)

    return decorate if fn is None else decorate(fn)
