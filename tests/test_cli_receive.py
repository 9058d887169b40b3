"""``asjob receive``: every record reaches exactly one receiver, rendered before it is removed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import asjob
from asjob.cli import main
from asjob.receiving import claim, outputs_of, take
from asjob.session import Session
from asjob.store.sqlite import SQLiteStore
from tests import jobfuncs_cli
from tests.cli_support import Cli, environment

pytestmark = pytest.mark.timeout(120)

FN = "tests.jobfuncs_cli"


def _strict_json(line: str) -> Any:
    """``line`` parsed as JSON proper: NaN and Infinity, which Python's json accepts, refused."""
    return json.loads(line, parse_constant=_refuse)


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _run(
    cli: Cli, *args: str, extra_env: dict[str, str] | None = None, shell_redirect: str = ""
) -> subprocess.CompletedProcess[str]:
    """``asjob ARGS`` with its stdout redirected as a shell would (``>&-``, ``>/dev/full``)."""
    command = f'exec "$0" -m asjob "$@" {shell_redirect}'
    return subprocess.run(
        ["sh", "-c", command, sys.executable, *args],
        env={**environment(cli.store), **(extra_env or {})},
        cwd=cli.cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("p")]


# -- each record to exactly one receiver -------------------------------------------------------


def test_a_receive_prints_nothing_another_receive_removed_first(
    cli: Cli, session: Session, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    job_id = cli.start(f"{FN}:print_lines", "50")
    assert cli("wait", str(job_id)).returncode == 0
    others: list[subprocess.CompletedProcess[str]] = []
    remove_records = SQLiteStore.remove_records

    def another_receive_first(store: SQLiteStore, job: int, seqs: Any) -> set[int]:
        # Between reading the job's records and removing them, a whole other receive runs.
        if not others:
            others.append(cli("receive", str(job_id)))
        return remove_records(store, job, seqs)

    monkeypatch.setattr(SQLiteStore, "remove_records", another_receive_first)
    assert main(["receive", str(job_id)]) == 0
    out, err = capfd.readouterr()
    [other] = others
    assert (other.returncode, other.stdout) == (0, "end\n")
    assert _lines(other.stderr) == [f"p{i}" for i in range(50)]
    assert (out, err) == ("", "")  # all of it went to the other receive


def test_concurrent_receivers_of_a_printing_job_share_its_lines_exactly(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:print_lines", "400", "0.002"))
    printed: list[list[str]] = [[], []]
    values: list[str] = []

    def receive_repeatedly(mine: list[str]) -> None:
        for _ in range(8):
            result = cli("receive", job_id)
            assert result.returncode == 0, result.stderr
            mine.extend(_lines(result.stderr))
            values.extend(result.stdout.splitlines())

    threads = [threading.Thread(target=receive_repeatedly, args=(p,)) for p in printed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    last = cli("receive", job_id, "--wait")
    values.extend(last.stdout.splitlines())
    everything = printed[0] + printed[1] + _lines(last.stderr)
    assert sorted(everything, key=lambda line: int(line[1:])) == [f"p{i}" for i in range(400)]
    assert values == ["end"]


def test_keep_removes_nothing(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:print_lines", "3"))
    kept = cli("receive", job_id, "--wait", "--keep")
    assert (kept.stdout, _lines(kept.stderr)) == ("end\n", ["p0", "p1", "p2"])
    received = cli("receive", job_id)
    assert (received.stdout, _lines(received.stderr)) == ("end\n", ["p0", "p1", "p2"])


def test_claim_keeps_only_the_reads_it_removed(session: Session) -> None:
    generator = asjob.start_job(jobfuncs_cli.count, 3, kind="thread")
    parent = asjob.as_job(jobfuncs_cli.greet, kind="thread").map(["a", "b"])
    asjob.wait_job([generator, parent], timeout=30)
    for job in (generator, parent):
        first, second = take(session, job), take(session, job)
        mine = claim(session, second)
        assert [read.row.seq for read in mine.all_reads()] == [
            read.row.seq for read in second.all_reads()
        ]
        assert list(claim(session, first).all_reads()) == []  # the rows went to the other
        assert outputs_of(mine) == ([0, 1, 2] if job is generator else ["hi a", "hi b"])


# -- rendered before it is removed -------------------------------------------------------------


def test_values_json_cannot_hold_are_printed_as_strings_not_lost(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:beyond_json"))
    result = cli("receive", job_id, "--wait", "--json")
    assert result.returncode == 0, result.stderr
    assert _strict_json(result.stdout)["value"] == {
        "ratio": "inf",
        "n": "nan",
        "(1, 2)": "pair",
        "1": "one",
    }


def test_an_int_too_long_for_text_is_printed_whole(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:huge_int"))
    result = cli("receive", job_id, "--wait")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1" + "0" * 5000 + "\n"


def test_warnings_are_shown_as_warning_lines(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:warn_then", "kept"))
    result = cli("receive", job_id, "--wait")
    assert (result.returncode, result.stdout) == (0, "kept\n"), result.stderr
    assert result.stderr.splitlines() == [
        "WARNING: UserWarning: careful",
        "WARNING: from the writer",
    ]


def test_a_job_that_warned_is_received_under_warnings_as_errors(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:warn_then", "kept"))
    assert cli("wait", job_id).returncode == 0
    result = _run(cli, "receive", job_id, extra_env={"PYTHONWARNINGS": "error"})
    assert (result.returncode, result.stdout) == (0, "kept\n"), result.stderr
    assert result.stderr.splitlines() == [
        "WARNING: UserWarning: careful",
        "WARNING: from the writer",
    ]


def test_strings_print_exactly_as_they_are(cli: Cli) -> None:
    job_id = str(cli.start(f"{FN}:colored"))
    result = cli("receive", job_id, "--wait")
    assert (result.stdout, result.stderr) == ("\x1b[31mred\x1b[0m\n", "\x1b[31mred\x1b[0m\n")


# -- where the output goes ---------------------------------------------------------------------


def test_with_stdout_closed_a_command_does_nothing_and_exits_141(cli: Cli) -> None:
    started = _run(cli, "start", f"{FN}:noop", shell_redirect=">&-")
    assert (started.returncode, started.stderr) == (141, "")
    assert json.loads(cli("get", "--json").stdout) == []  # no job was started

    job_id = str(cli.start(f"{FN}:add", "1", "2"))
    assert cli("wait", job_id).returncode == 0
    received = _run(cli, "receive", job_id, shell_redirect=">&-")
    assert (received.returncode, received.stderr) == (141, "")
    assert cli("receive", job_id).stdout == "3\n"  # still there


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["receive", "--wait"], ["get"]])
def test_a_full_disk_is_one_line_and_exit_74(cli: Cli, command: list[str]) -> None:
    job_id = str(cli.start(f"{FN}:add", "1", "2"))
    result = _run(
        cli, *command, *([job_id] if command[0] == "receive" else []), shell_redirect=">/dev/full"
    )
    assert result.returncode == 74
    assert result.stderr == "asjob: cannot write to stdout: No space left on device\n"


# -- --json: one object per job ----------------------------------------------------------------


def test_json_prints_one_object_per_job_in_the_order_given(cli: Cli) -> None:
    ok, bad, partial, items = cli.start_many(
        [f"{FN}:greet", "ann"],
        [f"{FN}:fail", "nope"],
        [f"{FN}:count_then_fail", "2"],
        [f"{FN}:count", "2"],
    )
    given = [items, bad, ok, partial]
    result = cli("receive", *map(str, given), "--wait", "--json")
    assert result.returncode == 1
    assert [_strict_json(line) for line in result.stdout.splitlines()] == [
        {"id": items, "state": "Completed", "value": [0, 1]},
        {"id": bad, "state": "Failed", "error": "ValueError: nope", "partial_output": []},
        {"id": ok, "state": "Completed", "value": "hi ann"},
        {
            "id": partial,
            "state": "Failed",
            "error": "RuntimeError: after the items",
            "partial_output": [0, 1],
        },
    ]
    assert result.stderr.splitlines() == [
        f"asjob: job {bad} failed: ValueError: nope",
        "hello ann",
        f"asjob: job {partial} failed: RuntimeError: after the items",
    ]


def test_a_fan_out_parent_prints_its_childrens_results(
    session: Session, capfd: pytest.CaptureFixture[str]
) -> None:
    parent = asjob.as_job(jobfuncs_cli.greet, kind="thread").map(["a", "b"])
    assert parent.wait(timeout=30)
    assert main(["receive", str(parent.id), "--keep"]) == 0
    assert capfd.readouterr() == ("hi a\nhi b\n", "hello a\nhello b\n")
    assert main(["receive", str(parent.id), "--json"]) == 0
    out, _ = capfd.readouterr()
    assert _strict_json(out) == {"id": parent.id, "state": "Completed", "value": ["hi a", "hi b"]}
    assert main(["receive", str(parent.id)]) == 0
    assert capfd.readouterr() == ("", "")  # received already: nothing new, no null per child


# -- decoding ----------------------------------------------------------------------------------

_MODULE_OF_THE_PIPELINE = """
class Thing:
    def __init__(self, x):
        self.x = x

    def __repr__(self):
        return f"Thing({self.x})"


def thing(x=1):
    return Thing(x)
"""


def test_the_console_script_decodes_a_value_of_a_class_from_the_working_directory(
    cli: Cli,
) -> None:
    """`asjob start pipeline:thing` found the module in the current directory (as `python -m`
    would): the `asjob receive` of a later step in the same checkout decodes its class there."""
    (cli.cwd / "pipeline_steps.py").write_text(_MODULE_OF_THE_PIPELINE)
    script = str(Path(sys.executable).parent / "asjob")  # not `python -m`: no cwd on its path

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [script, *args],
            env=environment(cli.store),
            cwd=cli.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )

    started = run("start", "pipeline_steps:thing", "--kw", "x=7")
    assert started.returncode == 0, started.stderr
    received = run("receive", started.stdout.strip(), "--wait")
    assert (received.returncode, received.stdout, received.stderr) == (0, "Thing(7)\n", "")
