"""``wait``: the command a pipeline gates on (``receive`` is in :mod:`asjob.cli.receive`).

It takes job ids in the order the caller gives them (``--any`` depends on it), and its exit
code says how the jobs ended (see :mod:`asjob.cli.exits`).
"""

from __future__ import annotations

import sys
from datetime import timedelta

import click

import asjob

from ..formatting import visible
from ..states import JobState
from . import exits
from .arguments import JOB_ID, jobs_given, to_duration
from .output import view_jobs


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
    jobs = jobs_given(ids)
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
