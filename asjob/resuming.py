"""``resume_job``: continue the work of a job whose worker or starting process died.

Some work outlives the process that waits for it: an Azure long-running operation goes on in the
cloud when the worker polling it is killed. While such a job runs, its provider records in the
job's ``resume_data`` how to continue waiting (a JSON object whose ``provider`` key names the
provider; for Azure, the operation's continuation token and references to the connection, never
secrets). ``resume_job`` hands that to the provider, which returns a call that picks the wait up
where it stopped, without starting the work again.

A finished job never changes state again, so the resumed wait runs as a *new* job, named
``Resume of <name>``, whose receive returns what the original would have returned::

    job 7  Failed (worker killed)   resume_data: {"provider": "azure", ...}
      └── resume_job(7) ──► job 8 "Resume of <job 7's name>" ──► Running ──► Completed
"""

from __future__ import annotations

import json
import os
from typing import Any

from . import plugins
from .context import resolve_context
from .errors import BackendUnavailableError, InvalidJobStateError, JobNotFoundError
from .job import Job
from .launching import commit, prepare
from .session import Session, current_session
from .states import JobState

# The key, in a resumed job's resume_data, of the job that continues its work.
RESUMED_AS = "resumed_as"


def resume_job(
    job: Job[Any] | int, *, context: Any = None, kind: Any = None, detach: bool = False
) -> Job[Any]:
    """Continue the recorded work of a Failed or Stopped job in a new job, and return that job.

    ``context`` is the connection to continue with (default: the provider's choice, normally the
    references the job recorded). ``kind`` defaults to the original job's kind, except that a
    thread job resumed with ``detach=True`` (which lets the new job outlive this interpreter, as
    the CLI's ``asjob resume`` needs) continues in a process: a thread cannot outlive it.

    Raises :class:`~asjob.errors.InvalidJobStateError` when the job is still running with a live
    worker, has completed, recorded nothing to resume, or was resumed already by a job that is
    still waiting or has completed. (Two resumes at the same instant may both start: each then
    waits on the same operation, neither starts it again.)
    """
    if not isinstance(job, Job) and (not isinstance(job, int) or isinstance(job, bool)):
        raise TypeError(f"expected a Job or a job id, not {type(job).__name__}: {job!r}")
    session = current_session()
    job_id = job.id if isinstance(job, Job) else job
    handle = session.handle(session.store.get_job(job_id))
    record = handle._record()  # settles a job whose worker died as Failed first
    if not record.finished:
        where = f" (its worker, process {record.host_pid}, is alive)" if record.host_pid else ""
        raise InvalidJobStateError(
            f"job {job_id} is {record.state}{where}: wait for it, or stop it and then resume it",
            job_id,
        )
    if record.state is JobState.Completed:
        raise InvalidJobStateError(
            f"job {job_id} has completed: receive its result instead of resuming it", job_id
        )
    resume_data = record.resume_data or "{}"
    data = json.loads(resume_data)
    provider_name = plugins.resume_provider_name(resume_data)
    if not provider_name:
        raise InvalidJobStateError(
            f"job {job_id} recorded no work to resume (only jobs waiting on work that outlives "
            "them, such as an Azure long-running operation, can be resumed)",
            job_id,
        )
    try:
        provider = plugins.provider_named(provider_name)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"job {job_id} needs the {provider_name!r} provider to resume, whose packages are "
            f"not installed ({exc.name}): pip install 'asjob[{provider_name}]'",
            job_id,
        ) from None
    if provider is None:
        raise BackendUnavailableError(
            f"job {job_id} needs the {provider_name!r} provider to resume; it is not installed",
            job_id,
        )
    _check_not_resumed(session, job_id, data)
    try:
        call = provider.resume_call(resume_data, resolve_context(context) if context else None)
    except ValueError as exc:  # the provider cannot continue it (see Provider.resume_call)
        raise InvalidJobStateError(f"job {job_id} cannot be resumed: {exc}", job_id) from None
    prepared = prepare(
        session,
        call,
        name=f"Resume of {record.name}",
        kind=kind if kind is not None else _resumed_kind(record.kind, detach),
        working_directory=os.getcwd(),
        detach=detach,
    )
    prepared.job_type_name = record.job_type_name
    prepared.command = record.command
    resumed = commit(session, prepared)
    # Marked after the start: a start that fails leaves the job free to be resumed again.
    session.store.update(job_id, resume_data=json.dumps({**data, RESUMED_AS: resumed.id}))
    return resumed


def _check_not_resumed(session: Session, job_id: int, data: dict[str, Any]) -> None:
    """Refuse a second resume while the first one's job waits on the work or has its result:
    both would wait on the same operation. One that failed, was stopped or was removed leaves
    the job free to be resumed again."""
    earlier = data.get(RESUMED_AS)
    if not isinstance(earlier, int):
        return
    try:
        state = session.handle(session.store.get_job(earlier)).record().state
    except JobNotFoundError:
        return
    if state is JobState.Completed:
        raise InvalidJobStateError(
            f"job {job_id} was resumed as job {earlier}, which has completed: receive job "
            f"{earlier} instead",
            job_id,
        )
    if state not in (JobState.Failed, JobState.Stopped):
        raise InvalidJobStateError(
            f"job {job_id} is being resumed as job {earlier} ({state}): wait for job {earlier}, "
            "or stop it to resume again",
            job_id,
        )


def _resumed_kind(original: str, detach: bool) -> str:
    return "process" if detach and original == "thread" else original
