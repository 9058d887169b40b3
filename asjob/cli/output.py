"""What the commands print: jobs as the ``Get-Job`` table or as JSON, and received values.

Listing the store is the one command that must stay fast with thousands of jobs, and a
:class:`~asjob.job.Job` handle reads the store on every attribute. So jobs are shown from
:class:`JobView` snapshots taken with one query (a summary query when listing the whole SQLite
store); only jobs that are not finished are read one by one (which also settles any whose
worker died without reporting), and Failed ones for their reason.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

import click

from .. import plugins
from ..errors import JobFailedError, JobNotFoundError
from ..formatting import format_jobs, format_row
from ..job import Job
from ..session import current_session
from ..states import JobState
from ..store.base import CHILDREN, JobRecord
from ..store.sqlite import JobSummary
from .exits import writing_stdout

# Above this many jobs one query for the whole store beats one query per job.
_BULK = 20
_STATES = {state.value: state for state in JobState}
# Finished states whose summary says all a listing shows (a Failed job also needs its reason).
_SETTLED = frozenset({JobState.Completed, JobState.Stopped})


class JobView(NamedTuple):
    """A job's ``Get-Job`` attributes at one moment. (A named tuple: thousands are made per
    listing, and a frozen dataclass takes twice as long to build.)"""

    id: int
    name: str
    state: JobState
    has_more_data: bool
    location: str
    command: str
    job_type_name: str
    begin_stamp: float | None
    end_stamp: float | None
    reason: str | None

    @property
    def begin_time(self) -> datetime | None:
        return _time(self.begin_stamp)

    @property
    def end_time(self) -> datetime | None:
        return _time(self.end_stamp)

    def as_json(self) -> dict[str, Any]:
        """The attributes under their :class:`~asjob.job.Job` names; times in ISO 8601."""
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state.value,
            "has_more_data": self.has_more_data,
            "location": self.location,
            "command": self.command,
            "job_type_name": self.job_type_name,
            "begin_time": _iso(self.begin_time),
            "end_time": _iso(self.end_time),
            "reason": self.reason,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _time(stamp: float | None) -> datetime | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc)


def describe_failure(exc: BaseException) -> str:
    """``Type: message``, with the original type's name when it could not be rebuilt here
    (just ``Type`` when the exception cannot be made a string)."""
    if type(exc) is JobFailedError and exc.type_name:
        return f"{exc.type_name.rpartition('.')[2]}: {exc.original_message}"
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:
        return type(exc).__name__


def view_jobs(jobs: Sequence[Job[Any]]) -> list[JobView]:
    """Snapshots of ``jobs``, in order; a job removed meanwhile is left out."""
    store = current_session().store
    if len(jobs) > _BULK:
        known = {record.id: record for record in store.list_jobs()}
        records = [known[job.id] for job in jobs if job.id in known]
    else:
        records = []
        for job in jobs:
            with contextlib.suppress(JobNotFoundError):
                records.append(store.get_job(job.id))
    return view_records(records)


def view_records(records: Sequence[JobRecord]) -> list[JobView]:
    """Snapshots of the jobs ``records`` describe, read again where they may be stale."""
    session = current_session()
    views = []
    for record in records:
        if not record.finished:
            try:
                session.handle(record).is_finished()  # settles a job whose worker died unheard
                record = session.store.get_job(record.id)
            except JobNotFoundError:
                continue  # removed meanwhile
        views.append(_view(session.handle(record) if _needs_handle(record) else None, record))
    return views


def view_summaries(summaries: Sequence[JobSummary]) -> list[JobView]:
    """Snapshots from a fast listing. Jobs the summary cannot settle (not finished, Failed:
    its reason; fan-out parents: their children's data) are read in full."""
    store = current_session().store
    views = []
    for summary in summaries:
        state = _STATES[summary.state]
        if state in _SETTLED and summary.output_mode != CHILDREN:
            views.append(
                JobView(
                    summary.id,
                    summary.name,
                    state,
                    bool(summary.any_unreceived),
                    summary.location,
                    summary.command,
                    summary.job_type_name,
                    summary.begin_time,
                    summary.end_time,
                    None,
                )
            )
            continue
        with contextlib.suppress(JobNotFoundError):
            views.extend(view_records([store.get_job(summary.id)]))
    return views


def _needs_handle(record: JobRecord) -> bool:
    return record.state is JobState.Failed or record.output_mode == CHILDREN


def _view(job: Job[Any] | None, record: JobRecord) -> JobView:
    """``job`` is needed for what children decide: a fan-out parent's data and failure."""
    reason = job.reason if job is not None and record.state is JobState.Failed else None
    more = (
        job.has_more_data
        if job is not None and record.output_mode == CHILDREN
        else record.has_more_data
    )
    return JobView(
        record.id,
        record.name,
        record.state,
        more,
        record.location,
        record.command,
        record.job_type_name,
        record.begin_time,
        record.end_time,
        None if reason is None else describe_failure(reason),
    )


def format_views(views: Sequence[JobView]) -> str:
    """The ``Get-Job`` table of :func:`asjob.format_jobs`, from snapshots."""
    rows = (
        format_row(
            (
                v.id,
                v.name,
                v.job_type_name,
                v.state,
                v.has_more_data,
                v.location,
                v.command,
            )
        )
        for v in views
    )
    return "\n".join([format_jobs([]), *rows])


def render_value(value: Any) -> str:
    """One received value as text: a string as it is, else JSON where possible (an SDK
    object as the data its provider gives), else repr. Never raises."""
    if isinstance(value, str):
        return value
    with _whole_integers():
        try:
            return json.dumps(value, default=_provider_data, allow_nan=False)
        except Exception:  # not JSON (TypeError; ValueError: NaN), or nested too deep for it
            return safe_repr(value)


def safe_repr(value: Any) -> str:
    """``repr(value)``; the default ``<Type object at ...>`` when the value's own fails."""
    with _whole_integers():
        try:
            return repr(value)
        except Exception:
            return object.__repr__(value)


@contextlib.contextmanager
def _whole_integers() -> Iterator[None]:
    """Lift Python's limit on the digits of an int turned to text (4,300): it guards parsing
    untrusted text, and a value a job returned is printed whole rather than not at all."""
    get_limit = getattr(sys, "get_int_max_str_digits", None)
    if get_limit is None:  # a Python without the limit
        yield
        return
    limit = get_limit()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(limit)


def _provider_data(value: Any) -> Any:
    data = plugins.plain_data(value)
    if data is value:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return data


def _provider_data_or_repr(value: Any) -> Any:
    data = plugins.plain_data(value)
    return safe_repr(value) if data is value else data


def render_views_json(views: Sequence[JobView]) -> str:
    """A JSON list of the jobs, one job per line: readable, and the C encoder stays in use
    (``indent`` would switch json to its pure-Python encoder, slow on a big store)."""
    if not views:
        return "[]"
    return "[\n" + ",\n".join(json.dumps(view.as_json()) for view in views) + "\n]"


def render_json(value: Any) -> str:
    """A received value as one line of valid JSON; never raises. An SDK object is the data its
    provider gives; what JSON cannot hold becomes a string: NaN and the infinities as
    ``"nan"``, ``"inf"``, ``"-inf"``, a key other than a string or number and any other value
    as its repr (a value that defeats even that, such as a reference cycle: the whole value
    as its repr)."""
    with _whole_integers():
        with contextlib.suppress(Exception):  # see the docstring
            return _strict_json(value)
        with contextlib.suppress(Exception):  # RecursionError: a cycle, or nesting too deep
            return _strict_json(_json_ready(value))
        return json.dumps(safe_repr(value))


def _strict_json(value: Any) -> str:
    return json.dumps(value, default=_provider_data_or_repr, allow_nan=False)


def _json_ready(value: Any) -> Any:
    """``value`` with what ``json.dumps`` refuses outright replaced by strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {_json_key(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def _json_key(key: Any) -> Any:
    if key is None or isinstance(key, (str, int)):
        return key
    if isinstance(key, float) and math.isfinite(key):
        return key
    return safe_repr(key)


def echo(line: str) -> None:
    """Print ``line`` on stdout; a write that fails raises :class:`~asjob.cli.exits.OutputFailed`
    (a closed pipe ``BrokenPipeError``, as ever)."""
    with writing_stdout():
        click.echo(line)
