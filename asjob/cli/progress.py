"""``asjob wait`` on a terminal: a live table of the jobs being waited for.

Each row shows a job's state, its latest ``write_progress`` record (as a bar when it has a
percentage) and how long it has run. Only used when stdout is a terminal; rich is imported
here, lazily, so the other commands and ``wait`` in CI do not pay for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..formatting import visible
from ..job import Job
from ..states import JobState
from ..verbs import wait_job
from .output import JobView, view_jobs

if TYPE_CHECKING:
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

TICK_S = 0.25
_STYLES = {
    JobState.Completed: "green",
    JobState.Failed: "bold red",
    JobState.Stopped: "yellow",
    JobState.Running: "cyan",
}


def wait_with_progress(
    jobs: Sequence[Job[Any]], any_: bool, timeout: float | None
) -> list[Job[Any]]:
    """:func:`asjob.wait_job`, redrawing the table every tick; the last table stays on screen."""
    from rich.console import Console
    from rich.live import Live

    deadline = None if timeout is None else time.monotonic() + timeout
    ending = _EndingSignals()
    try:
        display = Live(render(jobs), console=Console(), auto_refresh=False)
        with ending, display as live, ending.armed():
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                step = TICK_S if remaining is None else min(TICK_S, remaining)
                done = wait_job(list(jobs), any=any_, timeout=step)
                live.update(render(jobs), refresh=True)
                if done or (remaining is not None and remaining <= TICK_S):
                    return done
    except _Ended as ended:  # the display is put away: now end as the signal would have
        _end_by(ended.signum)
        raise  # not reached


def _end_by(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


class _Ended(BaseException):
    """A signal that ends the process arrived (not an error: nothing may catch it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _EndingSignals:
    """SIGTERM, SIGHUP and SIGQUIT end the wait through the live display's exit, as Ctrl-C
    does, so the terminal gets its cursor back (killed outright, the process would leave it
    hidden).

    Only while :meth:`armed`, inside the display: one that arrives while the display is being
    put up (its first table already shown) or put away is held, then acted on once that is
    done; raised there, it would skip the display's exit and leave the cursor hidden.
    """

    WATCHED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)

    def __init__(self) -> None:
        self._armed = False
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _EndingSignals:
        self._previous = {signum: signal.signal(signum, self._arrived) for signum in self.WATCHED}
        return self

    def _arrived(self, signum: int, _frame: object) -> None:
        if self._armed:
            self._armed = False
            raise _Ended(signum)
        self._pending = signum

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        self._armed = True
        try:
            if self._pending is not None:
                raise _Ended(self._pending)
            yield
        finally:
            self._armed = False

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._pending is not None and not isinstance(exc[1], _Ended):
            _end_by(self._pending)  # came while the display was put away: act on it now


def render(jobs: Sequence[Job[Any]]) -> Table:
    """The table for the jobs as they are now."""
    from rich.table import Table
    from rich.text import Text

    views = view_jobs(jobs)
    finished = sum(view.state.finished for view in views)
    table = Table(
        title=f"Waiting for {len(jobs)} job(s): {finished} finished", title_justify="left"
    )
    for column in ("Id", "Name", "State", "Progress", "Status", "Elapsed"):
        table.add_column(column)
    by_id = {job.id: job for job in jobs}
    now = datetime.now(timezone.utc)
    for view in views:
        # The job's own text as Text, never as a str: rich would read "[...]" in it as
        # markup (and fail on a stray "[/x]"), and pass its escape sequences to the terminal.
        table.add_row(
            str(view.id),
            Text(visible(view.name)),
            f"[{_STYLES.get(view.state, '')}]{view.state}[/]",
            *_progress(by_id[view.id], view),
            _elapsed(view, now),
        )
    return table


def _progress(job: Job[Any], view: JobView) -> tuple[ProgressBar, Text]:
    """The progress bar and status text of the job's latest progress record."""
    from rich.progress_bar import ProgressBar
    from rich.text import Text

    records = job.progress
    latest = records[-1] if records else None
    percent = latest.percent if latest is not None else None
    if view.state is JobState.Completed:
        percent = 100
    bar = ProgressBar(
        total=100,
        completed=percent or 0,
        width=20,
        pulse=percent is None and not view.state.finished,
    )
    status = "" if latest is None else f"{latest.activity}: {latest.status}"
    if view.reason is not None:
        status = view.reason
    return bar, Text(visible(status))


def _elapsed(view: JobView, now: datetime) -> str:
    if view.begin_time is None:
        return ""
    seconds = ((view.end_time or now) - view.begin_time).total_seconds()
    minutes, seconds = divmod(max(seconds, 0.0), 60)
    return f"{int(minutes)}m{seconds:04.1f}s" if minutes else f"{seconds:.1f}s"
