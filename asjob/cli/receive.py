"""``asjob receive``: print what jobs produced, every record to exactly one receiver.

::

    take     read and decode the jobs' unreceived records, removing nothing   asjob.receiving
    render   turn everything it may print into text, with fallbacks            here, output.py
    claim    remove the rows read, keeping only those this command removed     asjob.receiving
    print    per job: its claimed messages on stderr (in the order recorded), its values (or
             its JSON line) on stdout, its failure on stderr

Rendering comes before the claim, so nothing leaves the store because it could not be printed,
and printing only picks and joins strings. Two commands receiving one job at once print
disjoint parts of it, nothing twice. What is claimed and then cannot be written (the reader of
a pipe went away, Ctrl-C, a full disk) is lost, as with PowerShell's Receive-Job, which drains
too. ``--keep`` claims nothing.

The messages shown are PowerShell's defaults: information (what the job printed) and errors as
they are, warnings as ``WARNING: ...`` lines; verbose, debug and progress records are drained
without being shown. They are printed as text, never re-raised through this process's warnings
or logging (``PYTHONWARNINGS=error`` must not turn a job's warning into a crash here).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO, TypeAlias

import click

import asjob

from .. import records as r
from ..errors import RemoteTraceback
from ..receiving import Read, Taken, claim, job_failure, outputs_of, result_of, take
from ..session import current_session
from ..store.base import CHILDREN, GENERATOR, VALUE
from . import exits
from .arguments import JOB_ID, import_from_working_directory, jobs_given
from .output import describe_failure, render_json, render_value

# An output as rendered: a value's text (``None``: a function job's ``None``, which plain
# receive does not print), or a list of them for a generator job or a fan-out parent.
Rendered: TypeAlias = "str | list[Rendered] | None"

_SHOWN_STREAMS = frozenset({r.INFORMATION, r.ERROR, r.WARNING})


@click.command()
@click.argument("ids", metavar="ID...", type=JOB_ID, nargs=-1, required=True)
@click.option("--keep", is_flag=True, help="Leave the data to be received again.")
@click.option("--wait", is_flag=True, help="Wait for the jobs to finish first.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='One JSON object per job, in the order given: {"id", "state", "value"}, or for a '
    'Failed job {"id", "state", "error", "partial_output"}.',
)
@click.option(
    "--traceback",
    "show_traceback",
    is_flag=True,
    help="Print a failed job's traceback from its worker.",
)
def receive(
    ids: tuple[int, ...], keep: bool, wait: bool, as_json: bool, show_traceback: bool
) -> None:
    """Print what the jobs produced and has not been received yet.

    Values print as they are if strings, else as JSON where possible, else as their repr; a
    generator job's items print one per line. What a job printed and its errors go to stderr,
    its warnings as WARNING: lines. A Failed job prints its error to stderr (and a generator
    job the items it yielded before, on stdout), and the command exits 1.

    With --json, stdout holds exactly one line per job given, in order: {"id": 3, "state":
    "Completed", "value": ...}, the value null for a job received already, or for a Failed
    job {"id": 2, "state": "Failed", "error": "ValueError: ...", "partial_output": [...]}.
    What JSON cannot hold (NaN, a date) is a string.

    Of two receives of one job at once, each prints what it removed from the store: nothing
    is printed twice.
    """
    jobs = jobs_given(ids)
    if wait:
        asjob.wait_job(jobs)
    import_from_working_directory(first=False)  # where `asjob start` found the job's module
    session = current_session()
    taken = [take(session, job) for job in jobs]
    undecodable = next((t.error for t in taken if t.error is not None), None)
    if undecodable is not None:
        raise undecodable  # before claiming anything: every job's data stays for a later receive
    rendered = [_Rendering.of(t, as_json, show_traceback) for t in taken]
    claimed = taken if keep else [claim(session, t) for t in taken]
    failed = False
    for rendering, mine in zip(rendered, claimed, strict=True):
        rendering.print(mine)
        failed = failed or rendering.failure is not None
    if failed:
        click.get_current_context().exit(exits.JOB_FAILED)


@dataclass
class _Rendering:
    """Everything receiving one job may print, rendered from its take before the claim."""

    job_id: int
    state: str
    as_json: bool
    messages: dict[int, str] = field(default_factory=dict)  # by seq: stderr lines
    outputs: dict[int, str | None] = field(default_factory=dict)  # by seq: output values
    failure: str | None = None  # "Type: message"
    traceback: str | None = None

    @classmethod
    def of(cls, taken: Taken, as_json: bool, show_traceback: bool) -> _Rendering:
        rendering = cls(taken.job_id, taken.record.state.value, as_json)
        for read in taken.all_reads():
            if read.index is None:
                message = _message(read)
                if message is not None:
                    rendering.messages[read.row.seq] = message
        rendering._render_outputs(taken, depth=0)
        exc = job_failure(taken)
        if exc is not None:
            rendering.failure = describe_failure(exc)
            if show_traceback and isinstance(exc.__cause__, RemoteTraceback):
                rendering.traceback = exc.__cause__.text.rstrip()
        return rendering

    def _render_outputs(self, taken: Taken, depth: int) -> None:
        mode = taken.record.output_mode
        # Plain receive prints a fan-out parent's child's result on a line of its own, so a
        # generator child's items (and anything deeper) are items of a JSON list.
        listed = self.as_json or (depth >= 1 and mode == GENERATOR) or depth >= 2
        for read in taken.reads:
            if read.index is None:
                continue
            if listed:
                self.outputs[read.row.seq] = render_json(read.value)
            elif depth == 0 and mode == VALUE and read.value is None:
                self.outputs[read.row.seq] = None
            else:
                self.outputs[read.row.seq] = render_value(read.value)
        for child in taken.children:
            self._render_outputs(child, depth + 1)

    def print(self, claimed: Taken) -> None:
        """Print what ``claimed`` holds (the part of the take this command removed)."""
        seqs = sorted(read.row.seq for read in claimed.all_reads() if read.index is None)
        _write(sys.stderr, (self.messages[seq] for seq in seqs if seq in self.messages))
        outputs: list[Rendered] = outputs_of(claimed, self._output)
        if self.as_json:
            _write_stdout([self._json_line(claimed, outputs)])
        elif claimed.record.output_mode == VALUE:
            _write_stdout(output for output in outputs if isinstance(output, str))
        elif claimed.record.output_mode == CHILDREN and not _holds_output(claimed):
            pass  # its children's results were received before: nothing new, nothing printed
        else:
            _write_stdout(_as_line(output) for output in outputs)
        if self.failure is not None:
            lines = [f"asjob: job {self.job_id} failed: {self.failure}"]
            _write(sys.stderr, [*lines, *filter(None, [self.traceback])])

    def _output(self, read: Read) -> str | None:
        return self.outputs[read.row.seq]

    def _json_line(self, claimed: Taken, outputs: list[Rendered]) -> str:
        head = f'{{"id": {self.job_id}, "state": {render_json(self.state)}'
        if self.failure is None:
            return f'{head}, "value": {_json(result_of(claimed, outputs))}}}'
        error = render_json(self.failure)
        return f'{head}, "error": {error}, "partial_output": {_json(outputs)}}}'


def _holds_output(taken: Taken) -> bool:
    return any(read.index is not None for read in taken.all_reads())


def _message(read: Read) -> str | None:
    """A record as the line(s) printed for it on stderr; ``None`` for one not shown."""
    record = read.value
    if read.row.stream not in _SHOWN_STREAMS or not isinstance(record, r.StreamRecord):
        return None
    if read.row.stream != r.WARNING:
        return record.message
    if record.source == "warnings" and record.category:
        return f"WARNING: {record.category.rpartition('.')[2]}: {record.message}"
    return f"WARNING: {record.message}"


def _json(output: Rendered) -> str:
    """Rendered JSON fragments joined into one JSON value."""
    if output is None:
        return "null"
    if isinstance(output, str):
        return output
    return "[" + ", ".join(map(_json, output)) + "]"


def _as_line(output: Rendered) -> str:
    return output if isinstance(output, str) else _json(output)


def _write_stdout(lines: Iterable[str]) -> None:
    with exits.writing_stdout():
        _write(sys.stdout, lines)


def _write(stream: TextIO, lines: Iterable[str]) -> None:
    """Write ``lines`` exactly as they are (``click.echo`` would strip escape sequences when
    not on a terminal), each character the stream's encoding cannot hold escaped."""
    stream.flush()
    binary = stream.buffer
    binary.flush()
    encoding = stream.encoding or "utf-8"
    for line in lines:
        _write_all(binary, _encode(line + "\n", encoding))


def _write_all(binary: BinaryIO, data: bytes) -> None:
    """Write ``data`` to ``binary``'s file descriptor, all of it or an error. (A buffered
    write of a large value to a pipe whose reader goes away mid-way can end short without
    one, and the command would exit 0 having drained what nobody read.)"""
    try:
        fd = binary.fileno()
    except (AttributeError, OSError, ValueError):  # not backed by a descriptor
        binary.write(data)
        binary.flush()
        return
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _encode(text: str, encoding: str) -> bytes:
    try:
        return text.encode(encoding, "surrogateescape")  # the bytes a job wrote, given back
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace")
