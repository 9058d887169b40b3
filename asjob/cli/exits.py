"""The exit codes of the ``asjob`` command, and the error that ends a command with one.

A shell or CI step gates on these, so each means one thing:

====  ===========================================================================
0     done; ``wait``: every job (with ``--any``: the first) Completed
1     a job failed: ``receive`` of a Failed job; ``wait``: a job Failed or was Stopped
2     ``wait``: the timeout expired first (the jobs keep running)
3     bad input: unknown job, unusable store, unimportable function, bad argument
70    a bug in asjob (the message says how to get the traceback)
130   interrupted (Ctrl-C)
141   the reader of stdout went away (``asjob get | head -1``), as SIGPIPE would
====  ===========================================================================

Usage errors exit 3, not click's usual 2, so that a mistyped ``wait`` option is never read as a
timeout.
"""

from __future__ import annotations

import click

OK = 0
JOB_FAILED = 1
TIMEOUT = 2
BAD_INPUT = 3
INTERNAL = 70
INTERRUPTED = 130
BROKEN_PIPE = 141


class OutputClosed(Exception):
    """The reader of stdout went away: exit :data:`BROKEN_PIPE`. Raised in place of
    ``BrokenPipeError``, which click's ``main`` would turn into exit 1."""


class BadInput(click.ClickException):
    """Input a command cannot act on; printed as one line, exit code :data:`BAD_INPUT`."""

    exit_code = BAD_INPUT
