"""``receive`` and ``wait``: the commands a pipeline gates on, with what they print.

Both take job ids in the order the caller gives them (``wait --any`` depends on it), and their
exit codes say how the jobs ended (see :mod:`asjob.cli.exits`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import click

import asjob

from ..errors import RemoteTraceback
from ..formatting import visible
from ..job import Job
from ..session import current_session
from ..states import JobState
from ..store.base import CHILDREN, GENERATOR
from . import exits
from .arguments import JOB_ID, to_duration
from .output import describe_failure, render_json, render_value, view_jobs


def _given(ids: Sequence[int]) -> list[Job[Any]]:
    """The jobs with these ids, in the order given (``get_job`` sorts by id)."""
    found = {job.id: job for job in asjob.get_job(id=list(ids))}
    return [found[job_id] for job_id in ids]


# -- receive ---------------------------------------------------------------------------------


@click.command()
@click.argument("ids", metavar="ID...", type=JOB_ID, nargs=-1, required=True)
@click.option("--keep", is_flag=True, help="Leave the data to be received again.")
@click.option("--wait", is_flag=True, help="Wait for the jobs to finish first.")
@click.option("--json", "as_json", is_flag=True, help="One line of JSON per job.")
@click.option(
    "--traceback",
    "show_traceback",
    is_flag=True,
    help="Print a failed job's traceback from its worker.",
)
def receive(
    ids: tuple[int, ...], keep: bool, wait: bool, as_json: bool, show_traceback: bool
) -> None:
    """Print what the jobs produced and has not been received yet.

    Values print as they are if strings, else as JSON where possible, else as their repr; a
    generator job's items print one per line. What a job printed goes to stderr. A Failed job
    prints its error to stderr (and a generator job the items it yielded before, on stdout),
    and the command exits 1.
    """
    jobs = _given(ids)
    if wait:
        asjob.wait_job(jobs)
    failed = False
    for job in jobs:
        _echo_messages(job)
        mode = current_session().store.get_job(job.id).output_mode
        try:
            value = job.receive(keep=keep)
        except BaseException as exc:
            if not isinstance(exc.__cause__, RemoteTraceback):
                raise  # not the job's failure: ours (a store error, Ctrl-C)
            failed = True
            if mode in (GENERATOR, CHILDREN):  # what it produced before it failed
                _echo_value(getattr(exc, "partial_output", []), mode, as_json)
            click.echo(f"asjob: job {job.id} failed: {describe_failure(exc)}", err=True)
            if show_traceback:
                click.echo(str(exc.__cause__).rstrip(), err=True)
            continue
        _echo_value(value, mode, as_json)
    if failed:
        click.get_current_context().exit(exits.JOB_FAILED)


def _echo_messages(job: Job[Any]) -> None:
    """The job's printed text and non-terminating errors, for the CI log. (Its warnings and
    log records reach this process's warnings and logging as receive drains them.)"""
    for record in job.information:
        click.echo(record.message, err=True)
    for record in job.error:
        if record.log is None:
            click.echo(record.message, err=True)


def _echo_value(value: Any, mode: str, as_json: bool) -> None:
    if as_json:
        click.echo(render_json(value))
    elif mode in (GENERATOR, CHILDREN):
        for item in value:
            click.echo(render_value(item))
    elif value is not None:
        click.echo(render_value(value))


# -- wait ------------------------------------------------------------------------------------


@click.command()
@click.argument("ids", metavar="ID...", type=JOB_ID, nargs=-1, required=True)
@click.option("--any", "any_", is_flag=True, help="Return when the first job finishes.")
@click.option(
    "--timeout",
    callback=to_duration,
    metavar="DURATION",
    help="Give up after this long (seconds, or 30s, 15m, 2h): exit 2.",
)
def wait(ids: tuple[int, ...], any_: bool, timeout: timedelta | None) -> None:
    """Wait for jobs to finish; exit 0 if all (with --any: the first) Completed.

    Exits 1 if a job waited for Failed or was Stopped, 2 if the timeout expired first (the
    jobs keep running). Shows live progress on a terminal; prints nothing to stdout otherwise.
    """
    jobs = _given(ids)
    seconds = None if timeout is None else timeout.total_seconds()
    if sys.stdout.isatty():
        from .progress import wait_with_progress

        done = wait_with_progress(jobs, any_, seconds)
    else:
        done = asjob.wait_job(jobs, any=any_, timeout=seconds)
    if not done:
        pending = ", ".join(str(job.id) for job in jobs if not job.is_finished())
        click.echo(f"asjob: timed out after {seconds:g}s; still running: {pending}", err=True)
        click.get_current_context().exit(exits.TIMEOUT)
    unsuccessful = [job for job in done if job.state is not JobState.Completed]
    for view in view_jobs(unsuccessful):
        why = "" if view.reason is None else f": {view.reason}"
        click.echo(f"asjob: job {view.id} ({visible(view.name)}) {view.state}{why}", err=True)
    if unsuccessful:
        click.get_current_context().exit(exits.JOB_FAILED)
