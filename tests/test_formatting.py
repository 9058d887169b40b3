"""``format_jobs``: the Get-Job table."""

from __future__ import annotations

import unicodedata

import asjob
from asjob.session import Session
from tests import jobfuncs as f


def test_the_table_layout(session: Session) -> None:
    job = asjob.start_job(f.add, 1, 2, name="a-rather-long-job-name", kind="thread")
    asjob.wait_job(job)
    lines = asjob.format_jobs([job]).splitlines()
    assert lines[0] == (
        "Id     Name            PSJobTypeName   State         HasMoreData     "
        "Location             Command"
    )
    assert lines[1] == (
        "--     ----            -------------   -----         -----------     "
        "--------             -------"
    )
    row = lines[2]
    assert row[:7] == f"{job.id:<6} "
    assert row[7:23] == "a-rather-long-…  "[:16]
    assert row[23:39] == "ThreadJob       "
    assert row[39:53] == "Completed     "
    assert row[53:69] == "True            "
    assert row[69:90] == "localhost            "
    assert row[90:] == "add(1, 2)"


def test_long_commands_are_cut_with_an_ellipsis(session: Session) -> None:
    job = asjob.start_job(f.identity, "x" * 100, kind="thread")
    asjob.wait_job(job)
    command = asjob.format_jobs([job]).splitlines()[2][90:]
    assert len(command) == 25 and command.endswith("…")
    assert command == "identity('xxxxxxxxxxxxxx…"


def test_no_jobs_gives_the_header_only() -> None:
    assert len(asjob.format_jobs([]).splitlines()) == 2


def test_control_characters_in_a_name_are_shown_escaped(session: Session) -> None:
    job = asjob.start_job(f.add, 1, 2, name="\x1b]0;x\x07ab", kind="thread")
    asjob.wait_job(job)
    row = asjob.format_jobs([job]).splitlines()[2]
    assert "\x1b" not in row and "\x07" not in row
    assert row[7:23] == "\\x1b]0;x\\x07ab  "


def test_wide_and_combining_characters_keep_the_columns_aligned(session: Session) -> None:
    names = ["名前", "配置ジョブの名前がとても長い", "café-e\u0301", "ก\u0e31ข\u0e34 ok"]
    jobs = [asjob.start_job(f.add, 1, 2, name=name, kind="thread") for name in names]
    asjob.wait_job(jobs)
    rows = asjob.format_jobs(jobs).splitlines()[2:]

    def columns(text: str) -> int:  # as a terminal shows it
        return sum(
            0
            if unicodedata.category(c) in ("Mn", "Me", "Cf")
            else 2
            if unicodedata.east_asian_width(c) in "WF"
            else 1
            for c in text
        )

    name_cells = [row.split(" ", 1)[1].lstrip() for row in rows]
    assert [columns(cell[: cell.index("ThreadJob")]) for cell in name_cells] == [16] * 4
    assert name_cells[1].startswith("配置ジョブの名…")  # 14 columns and the ellipsis
