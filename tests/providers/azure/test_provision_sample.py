"""The main sample ends as a command-line tool should: bad input refused in one line, and at
Ctrl-C, a SIGTERM or a closed pipe quietly, with its jobs removed and its endpoint stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import asjob
from asjob.session import Session

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "provision_vms.py"


def start_sample(*options: str, stdout: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SAMPLE), *options],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def emulators_of(sample: subprocess.Popen[str]) -> list[psutil.Process]:
    try:
        children = psutil.Process(sample.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "asjob.providers.azure.emulator" in " ".join(c.cmdline())]


def test_a_negative_count_is_refused_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, str(SAMPLE), "--count", "-1"], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    assert "argument --count: invalid number of VMs value: '-1'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("stop_signal", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_ends_it_quietly_with_nothing_left_behind(
    session: Session, stop_signal: signal.Signals, status: int
) -> None:
    sample = start_sample("--count", "20")
    deadline = time.monotonic() + 60
    while (
        not (asjob.get_job(all_sessions=True) and emulators_of(sample))
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)  # until it has started jobs at its local endpoint
    [emulator] = emulators_of(sample)

    sample.send_signal(stop_signal)
    _, stderr = sample.communicate(timeout=60)

    assert sample.returncode == status
    assert "Traceback" not in stderr
    assert asjob.get_job(all_sessions=True) == []
    emulator.wait(10)  # ended with it (psutil raises TimeoutExpired otherwise)


def test_a_closed_pipe_ends_it_quietly_with_nothing_left_behind(session: Session) -> None:
    """As `provision_vms.py | head -2` does."""
    sample = start_sample("--count", "5", stdout=subprocess.PIPE)
    assert sample.stdout is not None
    sample.stdout.readline()
    sample.stdout.close()

    _, stderr = sample.communicate(timeout=60)

    assert sample.returncode == 1
    assert "Traceback" not in stderr and "Fatal Python error" not in stderr
    assert asjob.get_job(all_sessions=True) == []
