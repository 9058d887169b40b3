"""The exit codes of the ``asjob`` command, and the error that ends a command with one.

A shell or CI step gates on these, so each means one thing:

====  ===========================================================================
0     done; ``wait``: every job (with ``--any``: the first) Completed
1     a job failed: ``receive`` of a Failed job; ``wait``: a job Failed or was Stopped
2     ``wait``: the timeout expired first (the jobs keep running)
3     bad input: unknown job, a job in the wrong state (remove a running one without
      --force), unusable store, unimportable function, bad argument
70    a bug in asjob (the message says how to get the traceback)
74    stdout could not be written (a full disk, an I/O error), as sysexits' EX_IOERR
130   interrupted (Ctrl-C)
141   the reader of stdout went away (``asjob get | head -1``), as SIGPIPE would
====  ===========================================================================

Usage errors exit 3, not click's usual 2, so that a mistyped ``wait`` option is never read as a
timeout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click

OK = 0
JOB_FAILED = 1
TIMEOUT = 2
BAD_INPUT = 3
INTERNAL = 70
OUTPUT_FAILED = 74
INTERRUPTED = 130
BROKEN_PIPE = 141


class OutputClosed(Exception):
    """The reader of stdout went away: exit :data:`BROKEN_PIPE`. Raised in place of
    ``BrokenPipeError``, which click's ``main`` would turn into exit 1."""


class OutputFailed(Exception):
    """Writing stdout failed for a reason other than its reader going away (a full disk):
    exit :data:`OUTPUT_FAILED`. Not an ``OSError``, so that nothing on its way mistakes it for
    another."""


@contextlib.contextmanager
def writing_stdout() -> Iterator[None]:
    """Around a write to stdout: its failure becomes :class:`OutputFailed`, except a closed
    pipe (``BrokenPipeError``), which callers already turn into :data:`BROKEN_PIPE`."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputFailed(exc.strerror or str(exc)) from exc


class BadInput(click.ClickException):
    """Input a command cannot act on; printed as one line, exit code :data:`BAD_INPUT`."""

    exit_code = BAD_INPUT
