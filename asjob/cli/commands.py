"""The ``asjob`` commands: the job verbs for shells and CI pipelines.

The command is a session of its own, and works on every job in the store (``$ASJOB_STORE``):
the jobs it manages were started by other processes, earlier steps, or ``asjob start``, which
starts a detached job and exits at once while the job goes on.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import click

import asjob

from ..call import Call
from ..context import resolve_context
from ..decorator import unwrap_job_function
from ..job import Job
from ..launching import start_call
from ..session import current_session
from ..states import JobState
from ..store.sqlite import SQLiteStore
from .arguments import (
    JOB_ID,
    check_call,
    import_function,
    parse_keyword,
    parse_value,
    refuse_unknown_options,
    to_duration,
    to_states,
)
from .exits import BadInput, OutputClosed
from .output import (
    echo,
    format_views,
    render_views_json,
    view_jobs,
    view_records,
    view_summaries,
)
from .receive import receive
from .waiting import wait

F = TypeVar("F", bound=Callable[..., Any])

EPILOG = (
    "Exit codes: 0 done; 1 a job failed (receive) or failed or was stopped (wait); "
    "2 wait timed out; 3 bad input (unknown job, unusable store, bad function or argument)."
)


@contextlib.contextmanager
def _closed_output_passes_click() -> Iterator[None]:
    """Carry a closed stdout past click as :class:`OutputClosed`: click's ``main`` catches
    ``BrokenPipeError`` itself and exits 1, which a pipeline would read as a failed job."""
    try:
        yield
    except BrokenPipeError as exc:
        raise OutputClosed() from exc


class _Commands(click.Group):
    """The ``asjob`` group. Between them, parsing (``asjob --help``) and invoking (a command
    and its own ``--help``) cover everything that prints."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _closed_output_passes_click():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        with _closed_output_passes_click():
            return super().invoke(ctx)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(asjob.__version__, prog_name="asjob")
def cli() -> None:
    """PowerShell-style background jobs from the shell, kept in the store at $ASJOB_STORE.

    \b
    id=$(asjob start deploy:create_vm vm1 2)   # Start-Job, detached: returns at once
    asjob get                                  # Get-Job: every job in the store
    asjob wait "$id" --timeout 15m             # Wait-Job: exit 0 only if it Completed
    asjob receive "$id"                        # Receive-Job: print what it returned
    asjob remove --state Completed --older-than 7d
    """


def _selection(fn: F) -> F:
    """The filters shared by get, stop and remove."""
    states = ", ".join(state.value for state in JobState)
    fn = click.option(
        "--state",
        "states",
        callback=to_states,
        multiple=True,
        metavar="STATE",
        help=f"Job state, one of {states}; repeatable.",
    )(fn)
    return click.option(
        "--name",
        "names",
        multiple=True,
        metavar="PATTERN",
        help="Job name, wildcards allowed (*, ?, [...]); repeatable.",
    )(fn)


OLDER_THAN = click.option(
    "--older-than",
    callback=to_duration,
    metavar="DURATION",
    help="Finished more than this long ago: 30s, 15m, 12h, 7d.",
)


def _select(
    ids: Sequence[int], names: Sequence[str], states: Sequence[str], older_than: timedelta | None
) -> list[Job[Any]]:
    before = None if older_than is None else datetime.now(timezone.utc) - older_than
    return asjob.get_job(
        id=list(ids) or None,
        name=list(names) or None,
        state=list(states) or None,
        before=before,
        all_sessions=True,
    )


def _select_for(
    verb: str,
    ids: Sequence[int],
    names: Sequence[str],
    states: Sequence[str],
    older_than: timedelta | None,
) -> list[Job[Any]]:
    if not (ids or names or states or older_than is not None):
        filters = "--name or --state" + (" or --older-than" if verb == "remove" else "")
        raise BadInput(f"name the jobs to {verb}: give their ids, or {filters}")
    return _select(ids, names, states, older_than)


# -- start ---------------------------------------------------------------------------------

_AFTER_SEPARATOR = "asjob.after_separator"


class _StartCommand(click.Command):
    """``start``, which must tell the function's arguments given after ``--`` (taken as they
    are, ``--name`` included) from those before it (where ``--nmae`` is a misspelt option)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # click, told to keep unknown options as arguments (so that -1 is one), no longer
        # says which arguments came after "--": they are the last ones, so count them.
        ctx.meta[_AFTER_SEPARATOR] = len(args) - args.index("--") - 1 if "--" in args else 0
        return super().parse_args(ctx, args)


@cli.command(cls=_StartCommand, context_settings={"ignore_unknown_options": True})
@click.argument("function", metavar="MODULE:FUNCTION")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--name", help="The job's name (default: Job<id>).")
@click.option(
    "--kind", default="process", show_default=True, help="Where the job runs: process, or dask."
)
@click.option(
    "--kw",
    "keywords",
    multiple=True,
    metavar="NAME=VALUE",
    help="A keyword argument, its value read like ARGS; repeatable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON, not its id.")
def start(
    function: str,
    args: tuple[str, ...],
    name: str | None,
    kind: str,
    keywords: tuple[str, ...],
    as_json: bool,
) -> None:
    """Start MODULE:FUNCTION(ARGS...) as a detached job and print its id.

    Each ARG is JSON when it parses as JSON, else a string: 2 is the int 2, done is the
    string "done", '"2"' the string "2". MODULE is imported from the current directory or
    sys.path. The job keeps running after this command exits; its outcome, streams and
    result land in the store.

    asjob's options may come anywhere before '--'; an argument for the function that starts
    with '-' (other than a number such as -1) goes after it:

    \b
    asjob start tool:run 1 --name x -- --verbose   # tool.run(1, "--verbose")
    """
    ctx = click.get_current_context()
    positional = [function, *args]
    before_separator = max(0, len(positional) - ctx.meta[_AFTER_SEPARATOR])
    refuse_unknown_options(ctx, positional[:before_separator])
    if kind == "thread":
        raise BadInput("a thread job would end with this command: use --kind process")
    fn = import_function(function)
    values = [parse_value(arg) for arg in args]
    kwargs = dict(parse_keyword(keyword) for keyword in keywords)
    check_call(fn, function, values, kwargs)
    fn = unwrap_job_function(fn)
    # Through a Call rather than start_job, so that the function's own parameters may be
    # called name or kind.
    call = Call(fn, tuple(values), kwargs, context=resolve_context(None))
    try:
        job = start_call(call, name=name, kind=kind, detach=True)
    except (TypeError, ValueError) as exc:  # an unknown kind, an argument that cannot travel
        raise BadInput(str(exc)) from None
    if as_json:
        echo(json.dumps(view_jobs([job])[0].as_json()))
    else:
        echo(str(job.id))


# -- get -------------------------------------------------------------------------------------


@cli.command()
@click.option("--id", "ids", type=JOB_ID, multiple=True, help="Job id; repeatable.")
@_selection
@OLDER_THAN
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the jobs.")
def get(
    ids: tuple[int, ...],
    names: tuple[str, ...],
    states: tuple[str, ...],
    older_than: timedelta | None,
    as_json: bool,
) -> None:
    """List jobs: every job in the store, or those selected, as the Get-Job table."""
    store = current_session().store
    if ids or names or states or older_than is not None:
        views = view_jobs(_select(ids, names, states, older_than))
    elif isinstance(store, SQLiteStore):  # the common case, kept fast for a busy CI runner
        views = view_summaries(store.list_summaries())
    else:
        views = view_records(store.list_jobs(top_level=True))
    if as_json:
        echo(render_views_json(views))
    elif views:
        echo(format_views(views))


cli.add_command(receive)
cli.add_command(wait)


# -- stop, remove, resume --------------------------------------------------------------------


@cli.command()
@click.argument("ids", metavar="[ID]...", type=JOB_ID, nargs=-1)
@_selection
def stop(ids: tuple[int, ...], names: tuple[str, ...], states: tuple[str, ...]) -> None:
    """Stop jobs, wherever they run, and return once their work has stopped."""
    asjob.stop_job(_select_for("stop", ids, names, states, None))


@cli.command()
@click.argument("ids", metavar="[ID]...", type=JOB_ID, nargs=-1)
@_selection
@OLDER_THAN
@click.option("--force", is_flag=True, help="Stop running jobs first.")
def remove(
    ids: tuple[int, ...],
    names: tuple[str, ...],
    states: tuple[str, ...],
    older_than: timedelta | None,
    force: bool,
) -> None:
    """Remove finished jobs and their data from the store.

    \b
    asjob remove --state Completed --older-than 7d   # retention for a long-lived runner
    """
    jobs = _select_for("remove", ids, names, states, older_than)
    if not force:
        running = [job for job in jobs if not job.is_finished()]
        if running:
            raise BadInput(
                f"job {running[0].id} is {running[0].state}: stop it first, or use --force"
            )
    asjob.remove_job(jobs, force=force)


@cli.command()
@click.argument("job_id", metavar="ID", type=JOB_ID)
def resume(job_id: int) -> None:
    """Resume an Azure long-running-operation job whose worker or starter died.

    The wait continues in a new detached job, whose id is printed.
    """
    echo(str(asjob.resume_job(job_id, detach=True).id))
