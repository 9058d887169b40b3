"""Shared fixtures: every test gets its own store file and a fresh session on it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import asjob
from asjob.session import Session
from tests.cli_support import Cli, cli_runner


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "store" / "jobs.db"
    monkeypatch.setenv("ASJOB_STORE", str(path))
    return path


@pytest.fixture
def session(store_path: Path) -> Iterator[Session]:
    """A session on a fresh SQLite store; its jobs are stopped and its workers gone after."""
    current = asjob.use_store(asjob.SQLiteStore(store_path))
    yield current
    current.close()


@pytest.fixture(params=["process", "thread"])
def kind(request: pytest.FixtureRequest, session: Session) -> str:
    """Run the test once per local kind."""
    return str(request.param)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def cli(store_path: Path, tmp_path: Path) -> Iterator[Cli]:
    """``asjob ...`` in fresh processes on this test's store (see tests.cli_support)."""
    yield from cli_runner(store_path, tmp_path)


def new_job_thread(before: set[threading.Thread], job_id: int) -> threading.Thread:
    """The thread running thread job ``job_id``, started since ``before``: ids restart with
    each test's store, and an earlier test's abandoned job thread may still bear the name."""
    name = f"asjob-thread-job-{job_id}"
    [thread] = [t for t in threading.enumerate() if t not in before and t.name == name]
    return thread
