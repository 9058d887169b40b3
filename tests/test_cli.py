"""The ``asjob`` command, run as real separate processes against one store file."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import sqlite3
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
    wait_for_file,
    wait_gone,
    wait_on_a_terminal,
)

pytestmark = pytest.mark.timeout(60)

FN = "tests.jobfuncs_cli"


# -- start -------------------------------------------------------------------------------------


def test_start_prints_only_the_id_and_returns_before_the_job_ends(cli: Cli) -> None:
    began = time.monotonic()
    # Captured output waits for every holder of the pipe: a fork server or a detached worker
    # keeping the command's stdout would hold this up until the job ended.
    result = cli("start", f"{FN}:sleep_then", "1.5", "late", "--name", "slow")
    assert time.monotonic() - began < 1.5
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit() and result.stderr == ""
    job_id = result.stdout.strip()
    [running] = json.loads(cli("get", "--id", job_id, "--json").stdout)
    assert running["state"] == "Running"  # the starting process is gone; the job is not
    received = cli("receive", job_id, "--wait")
    assert (received.returncode, received.stdout) == (0, "late\n")
    [shown] = json.loads(cli("get", "--id", job_id, "--json").stdout)
    assert shown["name"] == "slow" and shown["state"] == "Completed"
    assert shown["has_more_data"] is False


def test_start_json_prints_the_job(cli: Cli) -> None:
    result = cli("start", f"{FN}:noop", "--json")
    shown = json.loads(result.stdout)
    assert shown["command"] == "noop()" and shown["state"] in ("Running", "Completed")


def test_arguments_are_json_when_they_parse_else_strings(cli: Cli) -> None:
    job_id = cli.start(
        f"{FN}:echo",
        "2",
        "done",
        '"2"',
        "[1, 2]",
        "-1",
        "null",
        "--kw",
        "flag=true",
        "--kw",
        "name=vm1",
    )
    received = cli("receive", str(job_id), "--wait", "--json")
    assert json.loads(received.stdout)["value"] == {
        "args": [2, "done", "2", [1, 2], -1, None],
        "kwargs": {"flag": True, "name": "vm1"},
        "types": ["int", "str", "str", "list", "int", "NoneType"],
    }


def test_start_imports_modules_from_the_current_directory(cli: Cli) -> None:
    (cli.cwd / "pipeline_steps_cli.py").write_text("def double(x):\n    return 2 * x\n")
    job_id = cli.start("pipeline_steps_cli:double", "21")
    assert cli("receive", str(job_id), "--wait").stdout == "42\n"


# -- get ---------------------------------------------------------------------------------------


def test_get_lists_every_job_in_the_store_as_the_get_job_table(cli: Cli) -> None:
    ok, bad = cli.start_many([f"{FN}:add", "1", "2", "--name", "adder"], [f"{FN}:fail", "nope"])
    assert cli("wait", str(ok), str(bad)).returncode == 1
    table = cli("get").stdout.splitlines()
    assert table[0].split() == [
        "Id",
        "Name",
        "PSJobTypeName",
        "State",
        "HasMoreData",
        "Location",
        "Command",
    ]
    rows = {int(line.split()[0]): line.split() for line in table[2:]}
    assert rows[ok] == [
        str(ok),
        "adder",
        "BackgroundJob",
        "Completed",
        "True",
        "localhost",
        "add(1,",
        "2)",
    ]
    assert rows[bad][:4] == [str(bad), f"Job{bad}", "BackgroundJob", "Failed"]
    listed = {j["id"]: j for j in json.loads(cli("get", "--json").stdout)}
    assert list(listed) == sorted([ok, bad])
    assert set(listed[ok]) == {
        "id",
        "name",
        "state",
        "has_more_data",
        "location",
        "command",
        "job_type_name",
        "begin_time",
        "end_time",
        "reason",
    }
    assert listed[ok]["reason"] is None and listed[bad]["reason"] == "ValueError: nope"
    assert listed[bad]["end_time"].endswith("+00:00")
    failed = json.loads(cli("get", "--state", "failed", "--json").stdout)
    assert [j["id"] for j in failed] == [bad]
    assert [j["id"] for j in json.loads(cli("get", "--name", "add*", "--json").stdout)] == [ok]
    assert json.loads(cli("get", "--name", "zzz*", "--json").stdout) == []
    assert cli("get", "--state", "Stopped").stdout == ""


def test_get_on_an_empty_store_prints_nothing(cli: Cli) -> None:
    result = cli("get")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# -- receive -------------------------------------------------------------------------------------


def test_receive_prints_strings_as_they_are_and_other_values_as_json_or_repr(cli: Cli) -> None:
    ids = cli.start_many(
        [f"{FN}:count", "3"], [f"{FN}:odd_values"], [f"{FN}:a_date"], [f"{FN}:add", "1", "2"]
    )
    result = cli("receive", *map(str, ids), "--wait")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "0",
        "1",
        "2",
        "['text', 2, {'k': [1, None]}, datetime.date(2024, 1, 2)]",
        "datetime.date(2024, 1, 2)",
        "3",
    ]
    assert cli("receive", *map(str, ids)).stdout == ""  # received already


def test_receive_keep_and_json(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:greet", "ann"))
    kept = cli("receive", job_id, "--wait", "--keep")
    assert kept.stdout == "hi ann\n"
    assert kept.stderr == "hello ann\n"  # what the job printed, kept out of stdout
    as_json = cli("receive", job_id, "--json")
    assert as_json.stdout == f'{{"id": {job_id}, "state": "Completed", "value": "hi ann"}}\n'
    again = cli("receive", job_id, "--json")  # received already
    assert json.loads(again.stdout) == {"id": int(job_id), "state": "Completed", "value": None}


def test_receiving_a_failed_job_prints_its_error_and_exits_1(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:talk_then_fail"))
    result = cli("receive", job_id, "--wait")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "about to fail",
        "a non-terminating error",
        f"asjob: job {job_id} failed: RuntimeError: it went wrong",
    ]
    again = cli("receive", job_id, "--traceback")
    assert again.returncode == 1
    assert "Traceback (most recent call last)" in again.stderr
    assert 'raise RuntimeError("it went wrong")' in again.stderr


def test_receive_goes_on_past_a_failed_job(cli: Cli) -> None:
    bad, good = cli.start_many([f"{FN}:fail"], [f"{FN}:add", "2", "2"])
    result = cli("receive", str(bad), str(good), "--wait")
    assert (result.returncode, result.stdout) == (1, "4\n")


# -- wait ----------------------------------------------------------------------------------------


def test_wait_exit_codes_gate_a_pipeline(cli: Cli) -> None:
    ok, bad, slow = cli.start_many(
        [f"{FN}:add", "1", "2"], [f"{FN}:fail", "boom"], [f"{FN}:sleep_then", "30"]
    )
    done = cli("wait", str(ok))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    failed = cli("wait", str(ok), str(bad))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == f"asjob: job {bad} (Job{bad}) Failed: ValueError: boom\n"
    began = time.monotonic()
    timed_out = cli("wait", str(ok), str(slow), "--timeout", "0.5")
    assert timed_out.returncode == 2 and 0.4 < time.monotonic() - began < 10
    assert timed_out.stderr == f"asjob: timed out after 0.5s; still running: {slow}\n"
    assert cli("wait", str(slow), "--timeout", "0").returncode == 2
    assert cli("wait", str(slow), str(ok), "--any", "--timeout", "20").returncode == 0
    assert cli("wait", str(bad), str(slow), "--any").returncode == 1
    assert cli("stop", str(slow)).returncode == 0
    stopped = cli("wait", str(slow))
    assert stopped.returncode == 1 and f"job {slow} (Job{slow}) Stopped" in stopped.stderr


def test_wait_on_a_terminal_shows_a_live_table(cli: Cli) -> None:
    job_id = cli.start(f"{FN}:progress", "3", "0.2")
    code, text, errors = wait_on_a_terminal(cli, job_id, columns=120)
    assert (code, errors) == (0, b"")
    assert "Waiting for 1 job(s): 1 finished" in text
    assert "Completed" in text and "Working: step 3" in text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT])
def test_a_wait_ended_by_a_signal_gives_the_terminal_its_cursor_back(cli: Cli, signum: int) -> None:
    job_id = cli.start(f"{FN}:progress", "100", "0.5")
    code, text, _errors = wait_on_a_terminal(cli, job_id, columns=120, signal_once_shown=signum)
    assert code == -signum  # ended by the signal, as before
    hidden, shown = text.rfind("\x1b[?25l"), text.rfind("\x1b[?25h")
    assert hidden != -1 and shown > hidden
    assert cli("get", "--id", str(job_id), "--json").stdout.count('"Running"') == 1


_SIGNALLED_WHILE_THE_TABLE_IS_PUT_UP = """
import os, signal
from rich.live import Live
import asjob
from asjob.cli.progress import wait_with_progress
from tests import jobfuncs as f

put_up = Live.start

def start_then_signalled(self, *args, **kwargs):
    put_up(self, *args, **kwargs)  # the first table is on the terminal, the cursor hidden
    os.kill(os.getpid(), signal.SIGTERM)

Live.start = start_then_signalled
wait_with_progress([asjob.start_job(f.sleep_then, 30, kind="thread")], False, None)
"""


def test_a_signal_while_the_table_is_put_up_still_gives_the_cursor_back(cli: Cli) -> None:
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", _SIGNALLED_WHILE_THE_TABLE_IS_PUT_UP],
        stdout=secondary,
        stdin=subprocess.DEVNULL,
        env={**environment(cli.store), "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(secondary)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
        while chunk := os.read(main, 65536):
            shown += chunk
    os.close(main)
    assert process.wait(timeout=30) == -signal.SIGTERM
    hidden, back = shown.rfind(b"\x1b[?25l"), shown.rfind(b"\x1b[?25h")
    assert hidden != -1 and back > hidden


# -- stop and remove -------------------------------------------------------------------------------


def test_stop_kills_the_worker_of_a_job_another_process_started(cli: Cli, tmp_path: Path) -> None:
    pid_file = tmp_path / "worker.pid"
    job_id = str(cli.start(f"{FN}:pid_then_sleep", str(pid_file), "60"))
    pid = int(wait_for_file(pid_file))
    began = time.monotonic()
    assert cli("stop", job_id).returncode == 0
    assert wait_gone(pid), "the worker survived the stop"
    assert time.monotonic() - began < 5
    [shown] = json.loads(cli("get", "--id", job_id, "--json").stdout)
    assert shown["state"] == "Stopped" and shown["reason"] is None
    received = cli("receive", job_id)
    assert (received.returncode, received.stdout) == (0, "")


def test_stop_and_remove_select_by_state(cli: Cli) -> None:
    *slow, ok = cli.start_many(
        [f"{FN}:sleep_then", "60"], [f"{FN}:sleep_then", "60"], [f"{FN}:add", "1", "1"]
    )
    assert cli("wait", str(ok)).returncode == 0
    assert cli("stop", "--state", "Running").returncode == 0
    states = {j["id"]: j["state"] for j in json.loads(cli("get", "--json").stdout)}
    assert states == {slow[0]: "Stopped", slow[1]: "Stopped", ok: "Completed"}
    assert cli("remove", "--state", "Completed").returncode == 0
    assert [j["id"] for j in json.loads(cli("get", "--json").stdout)] == sorted(slow)
    assert cli("remove", *map(str, slow)).returncode == 0
    assert cli("get").stdout == ""


def test_remove_refuses_a_running_job_unless_forced(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:sleep_then", "60"))
    one_line_error(cli("remove", job_id), f"job {job_id} is Running", "--force")
    assert cli("get", "--id", job_id).returncode == 0
    assert cli("remove", job_id, "--force").returncode == 0
    one_line_error(cli("get", "--id", job_id), f"no job with id {job_id}")


def test_retention_removes_finished_jobs_older_than_a_duration(cli: Cli) -> None:
    old_id, recent_id, failed = cli.start_many(
        [f"{FN}:add", "1", "1"], [f"{FN}:add", "1", "1"], [f"{FN}:fail"]
    )
    assert cli("wait", str(old_id), str(recent_id), str(failed)).returncode == 1
    eight_days_ago = time.time() - 8 * 86400
    with sqlite3.connect(cli.store) as conn:
        conn.execute(
            "UPDATE jobs SET end_time = ? WHERE id IN (?, ?)", (eight_days_ago, old_id, failed)
        )
    conn.close()
    assert cli("remove", "--state", "Completed", "--older-than", "7d").returncode == 0
    assert [j["id"] for j in json.loads(cli("get", "--json").stdout)] == sorted([recent_id, failed])
    assert cli("remove", "--older-than", "1w").returncode == 0
    assert [j["id"] for j in json.loads(cli("get", "--json").stdout)] == [recent_id]
    assert cli("get", "--older-than", "12h").stdout == ""
    # 0 is a duration too: every finished job, none running.
    running = cli.start(f"{FN}:sleep_then", "30")
    assert [j["id"] for j in json.loads(cli("get", "--json", "--older-than", "0").stdout)] == [
        recent_id
    ]
    assert cli("remove", "--older-than", "0s").returncode == 0
    assert [j["id"] for j in json.loads(cli("get", "--json").stdout)] == [running]
    assert cli("stop", str(running)).returncode == 0


# -- bad input -------------------------------------------------------------------------------

BAD_INPUT: list[tuple[list[str], list[str]]] = [
    (["receive", "999"], ["asjob: no job with id 999"]),
    (["wait", "999"], ["no job with id 999"]),
    (["stop", "999"], ["no job with id 999"]),
    (["receive", "abc"], ["asjob receive:", "'abc' is not a job id"]),
    (["start", "no_such_module_xyz:fn"], ["No module named 'no_such_module_xyz'"]),
    (["start", f"{FN}:missing"], [f"{FN} has no 'missing'"]),
    (["start", FN], ["expected MODULE:FUNCTION"]),
    (["start", f"{FN}:add", "1", "2", "3"], ["bad arguments for", "too many positional"]),
    (["start", f"{FN}:add", "1", "--kw", "b"], ["malformed keyword argument 'b'"]),
    (["start", f"{FN}:add", "1", "2", "--kind", "nope"], ["unknown kind 'nope'"]),
    (["start", f"{FN}:add", "1", "2", "--kind", "thread"], ["use --kind process"]),
    (["wait", "1", "--timeout", "soon"], ["'soon' is not a duration"]),
    (["remove", "--older-than", "7x"], ["'7x' is not a duration"]),
    (["remove", "--older-than", "-5s"], ["'-5s' is negative"]),
    (["get", "--state", "Done"], ["'Done' is not a job state"]),
    (["remove"], ["name the jobs to remove"]),
    (["stop"], ["name the jobs to stop"]),
    (["frobnicate"], ["No such command 'frobnicate'"]),
    (["receive"], ["Missing argument 'ID...'"]),
]


def test_bad_input_gives_one_line_and_exit_3(cli: Cli) -> None:
    results = cli.many(*(args for args, _ in BAD_INPUT))
    for (args, needles), result in zip(BAD_INPUT, results, strict=True):
        try:
            one_line_error(result, *needles)
        except AssertionError as exc:
            raise AssertionError(f"asjob {' '.join(args)}: {exc}") from None


def test_resume_refuses_what_it_cannot_resume_in_one_line(cli: Cli) -> None:
    one_line_error(cli("resume", "999"), "no job with id 999")
    job_id = cli.start(f"{FN}:add", "1", "2")
    assert cli("wait", str(job_id)).returncode == 0
    one_line_error(cli("resume", str(job_id)), f"job {job_id} has completed")


def test_a_file_that_is_not_a_store_is_named(cli: Cli) -> None:
    cli.store.parent.mkdir(parents=True, exist_ok=True)
    cli.store.write_bytes(b"this is not a database" * 100)
    one_line_error(cli("get"), str(cli.store), "is not an asjob job store")


def test_a_store_from_a_newer_asjob_is_refused(cli: Cli) -> None:
    asjob.SQLiteStore(cli.store)
    with sqlite3.connect(cli.store) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    one_line_error(cli("get"), "written by a newer asjob", "schema 99", "upgrade asjob")


def test_a_closed_pipe_ends_quietly(cli: Cli) -> None:
    store = asjob.SQLiteStore(cli.store)
    from asjob.store.base import NewJob

    for _ in range(3000):
        store.create_job(
            NewJob(
                name="",
                command="x" * 50,
                job_type_name="BackgroundJob",
                kind="process",
                session_id="elsewhere",
            )
        )
    process = subprocess.Popen(
        [sys.executable, "-m", "asjob", "get"],
        env=environment(cli.store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"Id ")
    process.stdout.close()
    assert process.wait(timeout=30) in (0, 141)
    assert process.stderr.read() == b""
    process.stderr.close()


def test_ctrl_c_ends_quietly(cli: Cli) -> None:
    job_id = cli.start(f"{FN}:sleep_then", "60")
    process = subprocess.Popen(
        [sys.executable, "-m", "asjob", "wait", str(job_id)],
        env=environment(cli.store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(1.0)  # into the wait
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130
    assert "Traceback" not in err and out == ""


def test_the_console_script_is_installed(cli: Cli) -> None:
    script = Path(sys.executable).parent / "asjob"
    assert script.exists(), "pip install -e . puts the asjob console script beside python"
    result = subprocess.run(
        [str(script), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment(cli.store),
    )
    assert result.returncode == 0 and asjob.__version__ in result.stdout
