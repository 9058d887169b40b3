"""Running ``asjob`` and Python snippets as real separate processes against one store file."""

from __future__ import annotations

import contextlib
import os
import pty
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import asjob
from asjob.session import Session

ROOT = Path(__file__).resolve().parent.parent


def environment(store: Path) -> dict[str, str]:
    """This environment, on ``store``, with the repository importable (for ``tests.*``)."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "ASJOB_STORE": str(store), "PYTHONPATH": os.pathsep.join(paths)}


class Cli:
    """``asjob ...`` in a fresh process, as a CI step runs it: no stdin, output captured."""

    def __init__(self, store: Path, cwd: Path) -> None:
        self.store = store
        self.cwd = cwd

    def __call__(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "asjob", *args],
            env=environment(self.store),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> int:
        result = self("start", *args)
        assert result.returncode == 0, result.stderr
        return int(result.stdout)

    def many(
        self, *commands: Sequence[str], timeout: float = 30
    ) -> list[subprocess.CompletedProcess[str]]:
        """Run several ``asjob`` commands at once (each in its own process), in order."""
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "asjob", *args],
                env=environment(self.store),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for args in commands
        ]
        results = []
        for args, process in zip(commands, processes, strict=True):
            out, err = process.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(args, process.returncode, out, err))
        return results

    def start_many(self, *calls: Sequence[str]) -> list[int]:
        """``asjob start`` for each call at once; their ids in order."""
        results = self.many(*(["start", *call] for call in calls))
        for result in results:
            assert result.returncode == 0, result.stderr
        return [int(result.stdout) for result in results]

    def python(self, code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet as its own process (its own session) on the store."""
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=environment(self.store),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, code: str) -> subprocess.Popen[str]:
        """Start a Python snippet as its own process and return at once (stdout piped)."""
        return subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=environment(self.store),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )


def stop_leftovers(store: Path) -> None:
    """Stop every unfinished job in ``store``, so no worker outlives the test. (From a session
    of its own, leaving this process's current session as it was.)"""
    session = Session(asjob.SQLiteStore(store))
    try:
        records = session.store.list_jobs(top_level=True)
        unfinished = [session.handle(r) for r in records if not r.finished]
        asjob.stop_job([job for job in unfinished if not job.is_finished()], session=session)
    finally:
        session.close()


def wait_for_file(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.02)
    raise TimeoutError(f"{path} was not written within {timeout}s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.01)
    return False


def wait_on_a_terminal(
    cli: Cli, job_id: int, columns: int, signal_once_shown: int | None = None
) -> tuple[int, str, bytes]:
    """``asjob wait JOB_ID`` with its stdout on a pseudo-terminal (as a person at a shell sees
    it): its exit code, what the terminal showed, and its stderr. ``signal_once_shown`` is
    sent to it once the table is on the terminal."""
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "asjob", "wait", str(job_id)],
        stdout=secondary,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**environment(cli.store), "COLUMNS": str(columns), "TERM": "xterm"},
    )
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        if signal_once_shown is not None and b"Waiting for" in shown:
            process.send_signal(signal_once_shown)
            signal_once_shown = None
    os.close(main)
    assert process.stderr is not None
    with process.stderr:
        code = process.wait(timeout=30)
        return code, shown.decode(errors="replace"), process.stderr.read()


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A clean failure: exit 3, one line on stderr naming the problem (holding each of
    ``needles``), no traceback. Returns the line."""
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def cli_runner(store: Path, cwd: Path) -> Iterator[Cli]:
    """The body of a ``cli`` fixture: a :class:`Cli` on ``store``, and afterwards no job of
    it left running (when the store is still usable: some tests break it on purpose)."""
    yield Cli(store, cwd)
    with contextlib.suppress(asjob.StoreError):
        stop_leftovers(store)
