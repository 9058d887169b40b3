"""The ``asjob`` console script (also ``python -m asjob``).

::

    main ─► click group (commands.py) ─► asjob verbs ─► the store at $ASJOB_STORE
     └── every error becomes one line on stderr and an exit code (exits.py), here and only here

A shell author never sees a Python traceback for bad input: an unknown id, an unimportable
function, a malformed argument, an unusable store, a closed pipe, a full disk or Ctrl-C all end
with one line (or none) and a documented exit code. Started with stdout closed, a command does
nothing: it could not say what it did (``asjob start`` could not print the id of its job).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Sequence

import click

from ..errors import AsJobError
from . import exits
from .commands import cli

DEBUG_ENV = "ASJOB_DEBUG"


def main(args: Sequence[str] | None = None) -> int:
    """Run the command line ``args`` (default ``sys.argv[1:]``); return the exit code."""
    if sys.stdout is None:  # started with stdout closed: what it did could never be told
        return exits.BROKEN_PIPE
    argv = list(sys.argv[1:] if args is None else args)
    if not argv:
        click.echo(cli.get_help(click.Context(cli, info_name="asjob")))
        return exits.OK
    try:
        try:
            code = cli.main(argv, prog_name="asjob", standalone_mode=False)
        finally:
            with exits.writing_stdout():
                sys.stdout.flush()  # a closed pipe shows here, not as noise at interpreter exit
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "asjob"
        _error(f"{where}: {exc.format_message()} (see '{where} --help')")
        return exits.BAD_INPUT
    except click.ClickException as exc:
        _error(f"asjob: {exc.format_message()}")
        return exits.BAD_INPUT
    except AsJobError as exc:
        _error(f"asjob: {exc}")
        return exits.BAD_INPUT
    except (click.Abort, KeyboardInterrupt):
        return exits.INTERRUPTED
    except (BrokenPipeError, exits.OutputClosed):
        _silence_stdout()
        return exits.BROKEN_PIPE
    except exits.OutputFailed as exc:
        _silence_stdout()
        _error(f"asjob: cannot write to stdout: {exc}")
        return exits.OUTPUT_FAILED
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        _error(
            f"asjob: unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback)"
        )
        return exits.INTERNAL
    return code if isinstance(code, int) else exits.OK


def _error(message: str) -> None:
    with contextlib.suppress(BrokenPipeError):
        click.echo(" ".join(message.split()), err=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush (of what could not be
    written) has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


__all__ = ["cli", "main"]
