"""Starting jobs: from a call to a Running job, in two steps so nothing is half-made.

``prepare`` checks everything that can fail (the kind, the working directory, whether the call
can be sent to a worker) before any record exists; ``commit`` creates the record and hands the
job to its kind, or to a throttle that starts it when a slot frees.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import plugins
from .call import Call, command_text
from .context import check_context
from .failures import encode_failure
from .kinds.base import Kind, LaunchOptions
from .session import KINDS, Session, current_session, ensure_open
from .states import JobState, transition
from .store.base import GENERATOR, VALUE, JobRecord, NewJob
from .throttle import Throttle

if TYPE_CHECKING:
    from .job import Job


@dataclass
class Prepared:
    kind: Kind
    payload: Any
    options: LaunchOptions
    name: str
    command: str
    job_type_name: str
    output_mode: str


def check_start(fn: Any, kind: Any, context: Any, *, starter: str) -> None:
    """Refuse, before any job exists, what could only make a job that fails or never runs
    (``starter`` names the verb in the message: ``start_job``, ``as_job``)."""
    if not callable(fn):
        raise TypeError(f"{starter} needs a callable, not {type(fn).__name__}: {fn!r:.80}")
    # A kind object names itself and either runs jobs or binds to the session's own instance
    # of its kind (DaskKind(address)); Session.add_kind relies on both.
    is_kind_object = isinstance(getattr(kind, "name", None), str) and (
        callable(getattr(kind, "launch", None)) or callable(getattr(kind, "bind", None))
    )
    if not isinstance(kind, str) and not is_kind_object:
        raise TypeError(
            f"kind must be one of {', '.join(repr(k) for k in KINDS)} or a kind object "
            f"such as DaskKind(address), not {type(kind).__name__}: {kind!r:.80}"
        )
    check_context(context, "context")


def resolve_kind(session: Session, kind: Any) -> Kind:
    if isinstance(kind, str):
        return session.kind(kind)
    return session.add_kind(kind)


def resolve_working_directory(working_directory: str | os.PathLike[str] | None) -> str:
    """Where the job runs: ``working_directory``, else this process's own."""
    if working_directory is None:
        try:
            return os.getcwd()
        except FileNotFoundError:
            raise FileNotFoundError(
                "this process's working directory no longer exists, and a job runs in its "
                "caller's: change to a directory that exists, or pass working_directory="
            ) from None
    path = os.path.abspath(os.fspath(working_directory))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"working_directory {path!r} does not exist or is not a directory")
    return path


def prepare(
    session: Session,
    call: Call,
    *,
    name: str | None,
    kind: Any,
    working_directory: str | os.PathLike[str] | None,
    detach: bool,
) -> Prepared:
    ensure_open(session)
    backend = resolve_kind(session, kind)
    options = LaunchOptions(
        resolve_working_directory(working_directory),
        detach,
        chosen_directory=working_directory is not None,
    )
    command = command_text(call.fn, call.args, call.kwargs)
    job_type_name = backend.job_type_name
    default_name = ""
    provider = plugins.provider_for_call(call)
    if provider is not None:
        described = provider.describe_call(call)
        if described is not None:
            default_name, job_type_name = described
        call = provider.prepare_call(call)
    mode = GENERATOR if inspect.isgeneratorfunction(call.fn) else VALUE
    return Prepared(
        kind=backend,
        payload=backend.prepare(call, options),
        options=options,
        name=name or default_name,
        command=command,
        job_type_name=job_type_name,
        output_mode=mode,
    )


def commit(
    session: Session,
    prepared: Prepared,
    *,
    parent_id: int | None = None,
    position: int = 0,
    throttle: Throttle | None = None,
) -> Job[Any]:
    """Record the job, then launch it (or queue it on ``throttle``)."""
    record = record_job(
        session, prepared, parent_id=parent_id, position=position, throttle=throttle
    )
    job = session.handle(record)
    launch_job(session, prepared, record, throttle)
    return job


def record_job(
    session: Session,
    prepared: Prepared,
    *,
    parent_id: int | None = None,
    position: int = 0,
    throttle: Throttle | None = None,
) -> JobRecord:
    """Create the job's record: Running if its kind runs it as it is launched, else
    NotStarted. A fan-out records every child before it launches any, so the parent cannot
    settle while some of its children do not exist yet."""
    at_once = throttle is None and prepared.kind.runs_on_creation
    return session.store.create_job(
        NewJob(
            name=prepared.name,
            command=prepared.command,
            job_type_name=prepared.job_type_name,
            kind=prepared.kind.name,
            session_id=session.id,
            output_mode=prepared.output_mode,
            parent_id=parent_id,
            position=position,
            detached=prepared.options.detached,
            host_pid=os.getpid(),
            state=JobState.Running if at_once else JobState.NotStarted,
            host_started=session.process_started if at_once else None,
        )
    )


def launch_job(
    session: Session, prepared: Prepared, record: JobRecord, throttle: Throttle | None
) -> None:
    """Hand a recorded job to its kind, or to ``throttle`` to start when a slot frees."""

    def launch(wait: bool) -> None:
        try:
            prepared.kind.launch(record, prepared.payload, prepared.options, wait=wait)
        except Exception as exc:
            transition(session.store, record.id, JobState.Failed, reason=encode_failure(exc))
            session.job_finished(record.id)
            if wait:
                raise
        except BaseException:  # interrupted (Ctrl-C): stopped, not failed, wherever it got to
            _stop_interrupted(session, prepared, record.id)
            raise

    if throttle is None:
        launch(wait=True)
    else:
        session.bind_throttle(record.id, throttle)
        if throttle.submit(record.id, lambda: launch(wait=False)):
            launch(wait=True)


def _stop_interrupted(session: Session, prepared: Prepared, job_id: int) -> None:
    """Stop a job whose start was interrupted: its worker may have begun it already."""
    with contextlib.suppress(Exception):  # the interrupt goes on either way
        if transition(session.store, job_id, JobState.Stopping):
            prepared.kind.stop(session.store.get_job(job_id))
        transition(session.store, job_id, JobState.Stopped)
    session.job_finished(job_id)


def start_call(
    call: Call,
    *,
    name: str | None = None,
    kind: Any = "process",
    working_directory: str | os.PathLike[str] | None = None,
    detach: bool = False,
    throttle_limit: int | None = None,
    throttle_owner: Any = None,
) -> Job[Any]:
    session = current_session()
    prepared = prepare(
        session, call, name=name, kind=kind, working_directory=working_directory, detach=detach
    )
    throttle = session.throttle(throttle_owner, throttle_limit) if throttle_limit else None
    return commit(session, prepared, throttle=throttle)
