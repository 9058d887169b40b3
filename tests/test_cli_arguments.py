"""asjob.cli.arguments: how command-line text becomes call arguments, durations, functions."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
import pytest

from asjob.cli.arguments import (
    check_call,
    import_function,
    looks_like_option,
    parse_duration,
    parse_keyword,
    parse_value,
    to_duration,
    to_states,
)
from asjob.cli.exits import BadInput
from tests import jobfuncs_cli

PARAM = click.Option(["--x"])
CTX = click.Context(click.Command("x"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", 2),
        ("2.5", 2.5),
        ("-1", -1),
        ("true", True),
        ("null", None),
        ("done", "done"),
        ('"2"', "2"),
        ("[1, 2]", [1, 2]),
        ('{"a": 1}', {"a": 1}),
        ("[1, 2", "[1, 2"),
        ("", ""),
        ("vm 1", "vm 1"),
        ("NaN", "NaN"),
        ("-Infinity", "-Infinity"),
        ("[1, NaN]", "[1, NaN]"),
    ],
)
def test_an_argument_is_json_when_it_parses_else_a_string(text: str, value: object) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_keyword_arguments_are_name_equals_value() -> None:
    assert parse_keyword("size=2") == ("size", 2)
    assert parse_keyword("name=a=b") == ("name", "a=b")
    for bad in ("size", "=2", "not a name=1"):
        with pytest.raises(BadInput, match="malformed keyword argument"):
            parse_keyword(bad)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("12h", 43200),
        ("7d", 604800),
        ("2w", 1209600),
        ("1h30m", 5400),
        ("90", 90),
        ("0.5", 0.5),
        ("1.5h", 5400),
        (" 7D ", 604800),
        ("-30s", -30),  # a duration, refused as negative where one is not allowed
        ("-1h30m", -5400),
        ("+90", 90),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "7x", "d7", "7d junk", "h", "1h 30m", "--5s", "- 5s", "-"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration such as 30s"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["inf", "-inf", "1e15", "36526d", "99999999999w"])
def test_durations_past_100_years_are_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match="out of range: a duration is at most 100 years"):
        parse_duration(text)


def test_looks_like_option_spares_numbers_and_a_lone_dash() -> None:
    assert [looks_like_option(t) for t in ("--nmae", "--x=1", "-v")] == [True] * 3
    assert [looks_like_option(t) for t in ("-1", "-2.5e3", "-", "a-b", "")] == [False] * 5


def test_duration_and_state_options() -> None:
    assert to_duration(CTX, PARAM, "15m") == timedelta(minutes=15)
    assert to_duration(CTX, PARAM, None) is None
    with pytest.raises(click.BadParameter, match="is negative"):
        to_duration(CTX, PARAM, "-5")
    with pytest.raises(click.BadParameter, match="not a duration"):
        to_duration(CTX, PARAM, "soon")
    assert to_states(CTX, PARAM, ("completed", "NOTSTARTED")) == ("Completed", "NotStarted")
    with pytest.raises(click.BadParameter, match=r"not a job state \(NotStarted, Running"):
        to_states(CTX, PARAM, ("Running", "done"))


def test_import_function_finds_module_functions() -> None:
    assert import_function("tests.jobfuncs_cli:add") is jobfuncs_cli.add
    assert import_function("os.path:join") is __import__("os").path.join


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("tests.jobfuncs_cli", "expected MODULE:FUNCTION, got 'tests.jobfuncs_cli'"),
        (":add", "expected MODULE:FUNCTION"),
        ("tests.jobfuncs_cli:", "expected MODULE:FUNCTION"),
        (
            "no_such_module_xyz:fn",
            "cannot import 'no_such_module_xyz:fn': ModuleNotFoundError: "
            "No module named 'no_such_module_xyz'",
        ),
        ("tests.jobfuncs_cli:missing", "tests.jobfuncs_cli has no 'missing'"),
        ("tests.jobfuncs_cli:not_a_function", "is a int, not a function"),
    ],
)
def test_import_function_errors_name_the_problem(spec: str, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        import_function(spec)
    assert message in caught.value.format_message()


def test_a_module_that_fails_to_import_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_cli_mod.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(BadInput, match="RuntimeError: boom at import"):
        import_function("broken_cli_mod:fn")


def test_check_call_refuses_arguments_the_function_cannot_take() -> None:
    check_call(jobfuncs_cli.add, "m:add", [1, 2], {})
    check_call(jobfuncs_cli.echo, "m:echo", [1, 2, 3], {"x": 1})
    with pytest.raises(BadInput, match=r"bad arguments for m:add\(a, b\): too many positional"):
        check_call(jobfuncs_cli.add, "m:add", [1, 2, 3], {})
    with pytest.raises(BadInput, match="missing a required argument: 'b'"):
        check_call(jobfuncs_cli.add, "m:add", [1], {})
    with pytest.raises(BadInput, match="unexpected keyword argument 'c'"):
        check_call(jobfuncs_cli.add, "m:add", [1, 2], {"c": 3})
