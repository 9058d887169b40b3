"""``format_jobs``: the table ``Get-Job`` prints."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from .job import Job

COLUMNS: tuple[tuple[str, int], ...] = (
    ("Id", 6),
    ("Name", 15),
    ("PSJobTypeName", 15),
    ("State", 13),
    ("HasMoreData", 15),
    ("Location", 20),
    ("Command", 25),
)


def visible(text: str) -> str:
    """``text`` with what :meth:`str.isprintable` rejects escaped as ``repr`` would (``\\x1b``,
    ``\\n``, ``\\u202e``): a job's name is anyone's text, and a terminal obeys the escape
    sequences in it (retitling the window, moving the cursor) and a newline breaks the table."""
    if text.isprintable():  # the usual case, checked in C: a listing shows thousands
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _cell(value: Any, width: int) -> str:
    text = ("True" if value else "False") if isinstance(value, bool) else str(value)
    text = visible(" ".join(text.split()))  # one line per job, whatever the command holds
    if text.isascii():  # the usual case: one character, one column
        if len(text) > width:
            text = text[: width - 1] + "…"
        return text.ljust(width)
    # As PowerShell counts buffer cells: a wide character (名前) takes two columns, a
    # combining accent none, so the columns stay aligned on a terminal.
    if _columns(text) > width:
        kept, used = [], 0
        for char in text:
            if used + _char_columns(char) > width - 1:
                break
            kept.append(char)
            used += _char_columns(char)
        text = "".join(kept) + "…"
    return text + " " * (width - _columns(text))


def _char_columns(char: str) -> int:
    # Marks drawn on the character before (an accent, Thai vowel signs, a variation selector)
    # and invisible format characters take no column.
    if unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _columns(text: str) -> int:
    return sum(_char_columns(char) for char in text)


def format_row(values: Iterable[Any]) -> str:
    return " ".join(_cell(v, w) for v, (_, w) in zip(values, COLUMNS, strict=False)).rstrip()


def format_jobs(jobs: Iterable[Job[Any]]) -> str:
    """The jobs as PowerShell's ``Get-Job`` table: a header, a dashed underline, a row each."""
    lines = [
        format_row(label for label, _ in COLUMNS),
        " ".join(("-" * len(label)).ljust(width) for label, width in COLUMNS).rstrip(),
    ]
    for job in jobs:
        record = job.record()
        lines.append(
            format_row(
                (
                    record.id,
                    record.name,
                    record.job_type_name,
                    record.state,
                    job.has_more_data_in(record),
                    record.location,
                    record.command,
                )
            )
        )
    return "\n".join(lines)
