"""Command-line text to Python: call arguments, ``MODULE:FUNCTION``, durations and states.

Call arguments are JSON when they parse as JSON, else strings, so a shell author writes
``asjob start deploy:create_vm vm1 2 true`` for ``create_vm("vm1", 2, True)`` and quotes only
to force a string (``'"2"'``).
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import click

import asjob

from ..job import Job
from ..states import JobState
from .exits import BadInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
# Longer than any wait or retention means, and short enough that "now minus it" is still a
# date Python can hold (``--older-than 1e11`` would reach before the year 1).
MAX_DURATION = timedelta(days=36525)
# SQLite's integers are 64-bit: a larger id is no job's, and SQLite cannot even compare it.
MAX_JOB_ID = 2**63 - 1


def parse_value(text: str) -> Any:
    """``text`` as JSON if it is valid JSON, else the string itself. ``NaN`` and ``Infinity``
    stay strings: Python's json reads them, but they are not JSON."""
    try:
        return json.loads(text, parse_constant=_not_json)
    except ValueError:
        return text


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def parse_keyword(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as ``(name, parse_value(value))``."""
    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier():
        raise BadInput(f"malformed keyword argument {text!r}: expected NAME=VALUE")
    return name, parse_value(value)


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``12h``, ``7d``, ``2w``, compounds such as ``1h30m``, or bare seconds."""
    cleaned = text.strip().lower()
    sign = 1
    if cleaned.startswith("-"):  # said to be negative by the caller, not "not a duration"
        sign, cleaned = -1, cleaned[1:]
    if sign < 0 and (cleaned.startswith(("-", "+")) or cleaned != cleaned.strip()):
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 12h or 7d")
    try:
        seconds = float(cleaned)
    except ValueError:
        parts = _DURATION.findall(cleaned)
        if not parts or "".join(number + unit for number, unit in parts) != cleaned:
            raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 12h or 7d") from None
        seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if math.isnan(seconds):
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 12h or 7d")
    if abs(seconds) > MAX_DURATION.total_seconds():
        raise ValueError(f"{text!r} is out of range: a duration is at most 100 years")
    return timedelta(seconds=sign * seconds)


def to_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """A click callback: the option's text as a duration (see :func:`parse_duration`)."""
    if value is None:
        return None
    try:
        duration = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    if duration < timedelta(0):
        raise click.BadParameter(f"{value!r} is negative", ctx, param)
    return duration


def to_states(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """A click callback: job state names in any case, as :class:`JobState` values."""
    try:
        return tuple(JobState.parse(value).value for value in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


class JobId(click.types.IntParamType):
    """A job id: a whole number from 1 to :data:`MAX_JOB_ID`."""

    name = "id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if not 1 <= number <= MAX_JOB_ID:
            self.fail(
                f"{value!r} is not a job id (a whole number from 1 to {MAX_JOB_ID})", param, ctx
            )
        return number


JOB_ID = JobId()


def import_from_working_directory(*, first: bool) -> None:
    """Make modules in the current directory importable, as ``python -m`` does: ``first`` for
    ``start`` (the pipeline's module named is the one meant), else last (for ``receive``,
    only to decode a value whose class such a module defines: nothing installed is shadowed).
    """
    try:
        here = os.getcwd()
    except FileNotFoundError:  # deleted: nothing to import from
        return
    if here in sys.path or "" in sys.path:
        return
    if first:
        sys.path.insert(0, here)
    else:
        sys.path.append(here)


def import_function(spec: str) -> Callable[..., Any]:
    """The callable that ``MODULE:FUNCTION`` names (``FUNCTION`` may be ``Class.method``).

    The current directory is importable, as with ``python -m``, so a pipeline's own modules
    work without setting ``PYTHONPATH``; the job's worker inherits this ``sys.path``.
    """
    module_name, colon, qualname = spec.partition(":")
    if not colon or not module_name or not qualname:
        raise BadInput(f"expected MODULE:FUNCTION, got {spec!r}")
    import_from_working_directory(first=True)
    try:
        # What the module prints when imported goes to stderr: stdout carries the command's
        # answer (a job id for a shell's id=$(asjob start ...)).
        with contextlib.redirect_stdout(sys.stderr):
            target: Any = importlib.import_module(module_name)
    # SystemExit too: a module that parses sys.argv or exits at import must not end this
    # command with an exit code that means "job failed" (1) or "timed out" (2).
    except (Exception, SystemExit) as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise BadInput(f"cannot import {spec!r}: {why}") from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise BadInput(f"cannot import {spec!r}: {module_name} has no {qualname!r}") from None
    if not callable(target):
        raise BadInput(f"{spec!r} is a {type(target).__name__}, not a function")
    return target  # type: ignore[no-any-return]


def looks_like_option(token: str) -> bool:
    """``--nmae``, ``--nmae=x`` or ``-x``; not ``-`` nor a negative number such as ``-1``."""
    return (
        token.startswith("-")
        and len(token) > 1
        and not isinstance(parse_value(token), (int, float))
    )


def refuse_unknown_options(ctx: click.Context, tokens: Sequence[str]) -> None:
    """Refuse the first of ``tokens`` (arguments click left alone, so that ``-1`` stays a
    number) that looks like an option: a misspelt ``--nmae`` must not become an argument."""
    for token in tokens:
        if looks_like_option(token):
            options = [opt for param in ctx.command.params for opt in param.opts]
            close = difflib.get_close_matches(token.partition("=")[0], options, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise click.UsageError(
                f"no such option: {token}{hint}; an argument for the function that starts "
                "with '-' goes after '--'",
                ctx,
            )


def check_call(fn: Callable[..., Any], spec: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Refuse arguments the function cannot take now, rather than as a Failed job later."""
    target = getattr(fn, "__wrapped__", fn)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # a builtin without a signature: let the job report it
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        bare = signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
            return_annotation=signature.empty,
        )
        raise BadInput(f"bad arguments for {spec}{bare}: {exc}") from None


def jobs_given(ids: Sequence[int]) -> list[Job[Any]]:
    """The jobs with these ids, in the order given (``get_job`` sorts by id); an unknown id
    raises :class:`~asjob.errors.JobNotFoundError`."""
    found = {job.id: job for job in asjob.get_job(id=list(ids))}
    return [found[job_id] for job_id in ids]
