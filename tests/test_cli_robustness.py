"""The ``asjob`` command given what a shell author should never have to debug: a file that is
not a store, an unwritable store, a module that exits at import, a closed pipe, numbers out of
range, hostile job names, a misspelt option. Each ends with one line and a documented exit code,
and leaves nothing changed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import asjob
from tests.cli_support import (
    Cli,
    environment,
    one_line_error,
    wait_on_a_terminal,
)

pytestmark = pytest.mark.timeout(60)

FN = "tests.jobfuncs_cli"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- a file that is not an asjob store -------------------------------------------------------


def _foreign_database(path: Path, *tables: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        for table in tables:
            conn.execute(f"CREATE TABLE {table} (id INTEGER, value TEXT)")
            conn.execute(f"INSERT INTO {table} VALUES (1, 'theirs')")
    path.chmod(0o644)


@pytest.mark.parametrize(
    "tables",
    [
        ("jobs",),  # a table of asjob's name, without asjob's columns
        ("users", "orders"),
        ("meta",),  # a meta table, but not asjob's
    ],
)
def test_another_programs_database_is_refused_and_left_untouched(
    cli: Cli, tables: tuple[str, ...]
) -> None:
    _foreign_database(cli.store, *tables)
    before = _digest(cli.store)
    one_line_error(cli("get"), str(cli.store), "is not an asjob job store", tables[0])
    one_line_error(cli("start", f"{FN}:noop"), "is not an asjob job store")
    assert _digest(cli.store) == before  # no tables added, journal mode not switched to WAL
    assert _mode(cli.store) == 0o644  # not even its mode: the file is not asjob's to tighten
    assert sorted(p.name for p in cli.store.parent.iterdir()) == [cli.store.name]  # no -wal


def test_an_empty_file_becomes_a_private_store(cli: Cli) -> None:
    cli.store.parent.mkdir(parents=True)
    cli.store.touch(mode=0o644)
    cli.store.chmod(0o644)
    result = cli("get")
    assert (result.returncode, result.stderr) == (0, "")
    assert _mode(cli.store) == 0o600
    cli.start(f"{FN}:noop")


def test_a_store_readable_by_others_is_made_owner_only(cli: Cli) -> None:
    assert cli("get").returncode == 0
    cli.store.chmod(0o644)
    # A connection held open keeps the -wal and -shm files, which SQLite made 0644 too.
    with contextlib.closing(sqlite3.connect(cli.store)) as conn:
        conn.execute("SELECT COUNT(*) FROM jobs").fetchall()
        companions = [Path(f"{cli.store}-wal"), Path(f"{cli.store}-shm")]
        assert [_mode(path) for path in companions] == [0o644, 0o644]
        result = cli("get")
        assert (result.returncode, result.stderr) == (0, "")
        assert [_mode(path) for path in (cli.store, *companions)] == [0o600] * 3


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_another_users_store_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    asjob.SQLiteStore(path)
    path.chmod(0o644)
    os.chown(path, 65534, -1)  # nobody's: its pickles could be anything
    before = path.read_bytes()
    with pytest.raises(asjob.UnsafeFileError, match="owned by user 'nobody'"):
        asjob.SQLiteStore(path)
    assert _mode(path) == 0o644 and path.read_bytes() == before


# -- an unwritable store ---------------------------------------------------------------------


def _unprivileged(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    """``asjob ...`` as a process that file modes apply to: as root, one that has dropped the
    capabilities that let root ignore them."""
    command = [sys.executable, "-m", "asjob", *args]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root ignores file modes, and setpriv is not here to drop that")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(
        command,
        env=environment(cli.store),
        cwd=cli.cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_store_in_a_read_only_directory_is_named_with_the_reason(cli: Cli) -> None:
    assert cli("get").returncode == 0  # the store exists; its -wal and -shm went with it
    directory = cli.store.parent
    directory.chmod(0o555)
    try:
        line = one_line_error(_unprivileged(cli, "get"), f"cannot write the job store {cli.store}")
    finally:
        directory.chmod(0o700)
    assert f"its directory {directory} is not writable" in line


@pytest.mark.parametrize("mode", [0o000, 0o400])
def test_a_store_without_read_and_write_permission_is_not_called_missing(
    cli: Cli, mode: int
) -> None:
    assert cli("get").returncode == 0
    cli.store.chmod(mode)
    line = one_line_error(_unprivileged(cli, "get"), str(cli.store), "Permission denied")
    assert line.startswith(f"asjob: cannot open the job store {cli.store} for reading and writing")


def test_a_store_that_cannot_be_created_says_create(cli: Cli) -> None:
    cli.store.parent.mkdir(mode=0o555)
    try:
        one_line_error(
            _unprivileged(cli, "get"), f"cannot create the job store {cli.store}: Permission"
        )
    finally:
        cli.store.parent.chmod(0o700)


# -- a module that exits while it is imported --------------------------------------------------


def test_a_module_that_exits_at_import_is_bad_input(cli: Cli) -> None:
    (cli.cwd / "exits_at_import.py").write_text(
        'import sys\nsys.exit("cannot run without config")\ndef fn():\n    return 1\n'
    )
    one_line_error(
        cli("start", "exits_at_import:fn"),
        "cannot import 'exits_at_import:fn': SystemExit: cannot run without config",
    )


def test_what_a_module_prints_at_import_stays_out_of_the_job_id(cli: Cli) -> None:
    (cli.cwd / "noisy_at_import.py").write_text(
        'print("loading noisy_at_import")\ndef fn():\n    return 1\n'
    )
    result = cli("start", "noisy_at_import:fn")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit(), result.stdout
    assert "loading noisy_at_import" in result.stderr
    assert cli("receive", "--wait", result.stdout.strip()).stdout.strip() == "1"


def test_a_module_that_runs_argparse_at_import_is_bad_input(cli: Cli) -> None:
    (cli.cwd / "parses_at_import.py").write_text(
        "import argparse\n"
        "parser = argparse.ArgumentParser()\n"
        'parser.add_argument("--region", required=True)\n'
        "parser.parse_args()\n"
        "def fn():\n    return 1\n"
    )
    result = cli("start", "parses_at_import:fn")
    # argparse exits 2, asjob's "timed out": it must not be taken for that.
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]  # after argparse's own usage message
    assert last == "asjob: cannot import 'parses_at_import:fn': SystemExit: 2"


# -- a closed pipe ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["get"], ["get", "--json"], ["--help"], ["get", "--help"], ["--version"]]
)
def test_output_to_a_closed_pipe_exits_141_quietly(cli: Cli, args: list[str]) -> None:
    cli.start(f"{FN}:noop")  # something for get to print
    reader, writer = os.pipe()
    os.close(reader)  # `asjob get | true`: the reader is gone before anything is written
    try:
        process = subprocess.run(
            [sys.executable, "-m", "asjob", *args],
            env=environment(cli.store),
            stdout=writer,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
    finally:
        os.close(writer)
    assert (process.returncode, process.stderr) == (141, b"")


@pytest.mark.parametrize(("function", "first"), [("count", b"0\n"), ("many_lines", b"line 0\n")])
def test_a_value_received_into_a_closed_pipe_exits_141_quietly(
    cli: Cli, function: str, first: bytes
) -> None:
    # Items one by one, or one string far larger than a pipe holds (written in one go).
    job_id = cli.start(f"{FN}:{function}", "100000")
    assert cli("wait", str(job_id)).returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "asjob", "receive", str(job_id), "--keep"],
        env=environment(cli.store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == first  # `asjob receive ID | head -1`
    process.stdout.close()
    assert process.wait(timeout=30) == 141
    with process.stderr:
        assert process.stderr.read() == b""


# -- numbers out of range --------------------------------------------------------------------

HUGE = "99999999999999999999999"
OUT_OF_RANGE = [
    (["receive", HUGE], f"'{HUGE}' is not a job id"),
    (["wait", HUGE], f"'{HUGE}' is not a job id"),
    (["get", "--id", HUGE], f"'{HUGE}' is not a job id"),
    (["stop", HUGE], f"'{HUGE}' is not a job id"),
    (["remove", HUGE], f"'{HUGE}' is not a job id"),
    (["resume", HUGE], f"'{HUGE}' is not a job id"),
    (["get", "--id", "0"], "'0' is not a job id"),
    (["receive", "seven"], "'seven' is not a job id"),
    (["wait", "1", "--timeout", "inf"], "'inf' is out of range"),
    (["wait", "1", "--timeout", "1e15"], "'1e15' is out of range"),
    (["wait", "1", "--timeout", "nan"], "'nan' is not a duration"),
    (["get", "--older-than", "1e11"], "'1e11' is out of range"),
    (["remove", "--older-than", "99999999999w"], "'99999999999w' is out of range"),
]


def test_numbers_out_of_range_are_bad_input(cli: Cli) -> None:
    results = cli.many(*(args for args, _ in OUT_OF_RANGE))
    for (args, needle), result in zip(OUT_OF_RANGE, results, strict=True):
        try:
            one_line_error(result, needle)
        except AssertionError as exc:
            raise AssertionError(f"asjob {' '.join(args)}: {exc}") from None


# -- job names -------------------------------------------------------------------------------

HOSTILE = "\x1b]0;pwned\x07[/x]\nnext\u202e"


def test_control_characters_in_a_name_are_shown_escaped_in_the_table(cli: Cli) -> None:
    job_id = cli.start(f"{FN}:add", "1", "2", "--name", HOSTILE)
    assert cli("wait", str(job_id)).returncode == 0
    table = cli("get").stdout
    assert "\x1b" not in table and "\x07" not in table and "\u202e" not in table
    header, _, row = table.splitlines()  # the newline did not break the row
    assert row.split()[1] == "\\x1b]0;pwned\\x…"  # escaped, then cut to the column's width
    # The columns after the name are where the header says.
    assert row.index("BackgroundJob") == header.index("PSJobTypeName")
    [shown] = json.loads(cli("get", "--json").stdout)
    assert shown["name"] == HOSTILE  # JSON keeps the name as it is


def test_wait_on_a_terminal_survives_a_hostile_name(cli: Cli) -> None:
    job_id = cli.start(f"{FN}:add", "1", "2", "--name", HOSTILE)
    code, text, errors = wait_on_a_terminal(cli, job_id, columns=160)
    assert (code, errors) == (0, b"")
    assert "\x1b]0;pwned" not in text and "\x07" not in text
    assert "pwned" in text and "Completed" in text  # "[/x]" was text, not rich markup


# -- options and the function's arguments ----------------------------------------------------


def test_a_misspelt_option_is_refused_not_passed_to_the_function(cli: Cli) -> None:
    line = one_line_error(cli("start", f"{FN}:echo", "1", "--nmae", "x"), "--nmae")
    assert "did you mean --name?" in line and "after '--'" in line
    one_line_error(cli("start", f"{FN}:echo", "1", "-v"), "no such option: -v")
    assert cli("get").stdout == ""  # no job was started


def test_arguments_after_the_separator_go_to_the_function_as_they_are(cli: Cli) -> None:
    job_id = cli.start(f"{FN}:echo", "-1", "--name", "sep", "-2.5", "-", "--", "--nmae", "-h")
    received = json.loads(cli("receive", str(job_id), "--wait", "--json").stdout)["value"]
    assert received["args"] == [-1, -2.5, "-", "--nmae", "-h"]
    [shown] = json.loads(cli("get", "--json").stdout)
    assert shown["name"] == "sep"


# -- a Dask scheduler that is not there ----------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1:1", "no-such-host.invalid"])
def test_an_unreachable_dask_scheduler_is_one_line_at_once(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setenv("ASJOB_DASK_SCHEDULER", address)
    started = time.monotonic()
    result = cli("start", f"{FN}:add", "1", "2", "--kind", "dask")
    # distributed's Client, failing in its constructor, waited out its close and printed a
    # traceback as the command exited.
    assert time.monotonic() - started < 15
    assert result.returncode == 3, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"asjob: cannot reach the Dask scheduler at {address}")
