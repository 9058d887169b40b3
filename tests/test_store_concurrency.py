"""The SQLite store under many processes at once, its permissions, and the files it refuses."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import asjob
from asjob.session import Session
from asjob.store.base import NewJob
from tests.cli_support import Cli, environment

pytestmark = pytest.mark.timeout(90)

PROCESSES = 8
JOBS_EACH = 10

# Half the starters wait for their jobs; the other half detach them and exit at once, so the
# jobs finish while other processes are still starting theirs.
STARTER = """
import asjob
from tests import jobfuncs_cli

if __name__ == "__main__":
    jobs = [asjob.start_job(jobfuncs_cli.add, {index}, n, detach={detach})
            for n in range({jobs})]
    if not {detach}:
        assert asjob.wait_job(jobs, timeout=60), "timed out"
    print(" ".join(str(job.id) for job in jobs))
"""


def _all_at_once(store: Path, scripts: list[str]) -> list[subprocess.CompletedProcess[str]]:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script)],
            env=environment(store),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for script in scripts
    ]
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=75)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_many_processes_starting_and_finishing_jobs_at_once_lose_nothing(
    session: Session, store_path: Path
) -> None:
    results = _all_at_once(
        store_path,
        [
            STARTER.format(index=1000 * index, jobs=JOBS_EACH, detach=index % 2 == 1)
            for index in range(PROCESSES)
        ],
    )
    for result in results:
        assert result.returncode == 0 and result.stderr == "", result.stderr
    ids = [int(word) for result in results for word in result.stdout.split()]
    assert len(ids) == len(set(ids)) == PROCESSES * JOBS_EACH
    jobs = asjob.get_job(all_sessions=True)
    assert asjob.wait_job(jobs, timeout=60)
    assert sorted(job.id for job in jobs) == sorted(ids)
    assert {job.state for job in jobs} == {asjob.JobState.Completed}
    per_process = [[int(word) for word in result.stdout.split()] for result in results]
    for index, started in enumerate(per_process):
        assert asjob.receive_job(started) == [1000 * index + n for n in range(JOBS_EACH)]


def test_processes_creating_a_new_store_at_once_all_get_it(tmp_path: Path) -> None:
    store = tmp_path / "fresh" / "jobs.db"
    creator = """
        import asjob
        from asjob.store.base import NewJob
        store = asjob.SQLiteStore({path!r})
        for _ in range(25):
            print(store.create_job(NewJob(name="", command="c()", job_type_name="BackgroundJob",
                                          kind="process", session_id="s")).id)
    """
    results = _all_at_once(store, [creator.format(path=str(store))] * PROCESSES)
    for result in results:
        assert result.returncode == 0 and result.stderr == "", result.stderr
    ids = [int(word) for result in results for word in result.stdout.split()]
    assert sorted(ids) == list(range(1, 25 * PROCESSES + 1))


def test_the_store_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "asjob" / "jobs.db"
    store = asjob.SQLiteStore(path)
    store.create_job(
        NewJob(
            name="", command="c()", job_type_name="BackgroundJob", kind="process", session_id="s"
        )
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for sidecar in (path.with_name("jobs.db-wal"), path.with_name("jobs.db-shm")):
        if sidecar.exists():
            assert stat.S_IMODE(sidecar.stat().st_mode) & 0o077 == 0


def test_the_cli_creates_an_owner_only_store(tmp_path: Path) -> None:
    path = tmp_path / "ci" / "jobs.db"
    result = Cli(path, tmp_path)("get")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    path.write_bytes(b"definitely not SQLite\n" * 200)
    with pytest.raises(asjob.StoreError, match=r"jobs\.db is not an asjob job store"):
        asjob.SQLiteStore(path)


def test_a_store_written_by_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    asjob.SQLiteStore(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(
        asjob.StoreError, match=r"newer asjob \(schema 2, this asjob reads up to 1\)"
    ):
        asjob.SQLiteStore(path)


def test_ids_are_never_reused_after_removal(tmp_path: Path) -> None:
    store = asjob.SQLiteStore(tmp_path / "jobs.db")
    new = NewJob(
        name="", command="c()", job_type_name="BackgroundJob", kind="process", session_id="s"
    )
    first, second = store.create_job(new).id, store.create_job(new).id
    store.delete_jobs([first, second])
    assert store.create_job(new).id == second + 1


def test_hundreds_of_concurrent_thread_jobs_fit_in_a_small_open_file_limit(
    store_path: Path,
) -> None:
    # Each job writes to the store while all of them are running. With a connection per
    # thread (two file descriptors each) 200 jobs would need 400: over a limit of 128.
    script = """
        import resource, threading
        import asjob
        from asjob import current_job

        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
        everyone_started = threading.Barrier(201)

        def report(n):
            current_job().write_progress("report", str(n))
            everyone_started.wait(30)
            return n

        jobs = [asjob.start_job(report, n, kind="thread") for n in range(200)]
        everyone_started.wait(30)
        assert asjob.receive_job(jobs, wait=True) == list(range(200))
        print("ok")
    """
    (result,) = _all_at_once(store_path, [script])
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
