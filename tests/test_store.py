"""The store contract, for both stores; and what only the SQLite file does."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from asjob import JobState, MemoryStore, SQLiteStore, StoreError, UnsafeFileError
from asjob.errors import JobNotFoundError
from asjob.store.base import CHILDREN, NewJob, Store
from asjob.store.sqlite import FREE_PAGES_KEPT
from tests.cli_support import Cli


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield SQLiteStore(tmp_path / "s" / "jobs.db")
    else:
        yield MemoryStore()


def _new(store: Store, **extra: object) -> int:
    fields: dict[str, object] = dict(
        name="", command="f()", job_type_name="BackgroundJob", kind="process", session_id="s1"
    )
    fields.update(extra)
    return store.create_job(NewJob(**fields)).id  # type: ignore[arg-type]


def test_ids_increase_and_are_never_reused(store: Store) -> None:
    first, second = _new(store), _new(store)
    assert second > first
    store.delete_jobs([second])
    assert _new(store) > second


def test_default_name_uses_the_id(store: Store) -> None:
    job_id = _new(store)
    assert store.get_job(job_id).name == f"Job{job_id}"
    assert store.get_job(_new(store, name="web")).name == "web"


def test_missing_job(store: Store) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        store.get_job(12345)
    assert caught.value.job_id == 12345


def test_compare_and_set_and_times(store: Store) -> None:
    job_id = _new(store)
    running = frozenset({JobState.NotStarted})
    assert store.compare_and_set_state(job_id, running, JobState.Running, host_pid=7)
    assert not store.compare_and_set_state(job_id, running, JobState.Running)
    record = store.get_job(job_id)
    assert record.state is JobState.Running and record.host_pid == 7
    assert record.begin_time is not None and record.end_time is None
    assert store.compare_and_set_state(
        job_id, frozenset({JobState.Running}), JobState.Completed, records=[("output", b"x")]
    )
    record = store.get_job(job_id)
    assert record.end_time is not None and record.unreceived == 1


def test_unknown_fields_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="not a settable job field: state"):
        store.update(_new(store), state="Completed")


def test_records_drain_in_order(store: Store) -> None:
    job_id = _new(store)
    store.append_records(job_id, [("output", b"1"), ("warning", b"w"), ("output", b"2")])
    assert [r.payload for r in store.read_records(job_id)] == [b"1", b"w", b"2"]
    assert [r.payload for r in store.read_records(job_id, streams=["output"], remove=True)] == [
        b"1",
        b"2",
    ]
    assert [r.payload for r in store.read_records(job_id)] == [b"w"]
    store.append_records(job_id, [("output", b"3")])
    assert [r.payload for r in store.read_records(job_id, remove=True)] == [b"w", b"3"]
    assert store.read_records(job_id) == []


def test_no_record_is_added_to_a_removed_job(store: Store) -> None:
    removed, kept = _new(store), _new(store)
    store.delete_jobs([removed])
    # As a stopped job's last batch of printed lines does, flushed after a forced remove.
    store.append_records(removed, [("information", b"late")])
    store.append_records(removed, [("information", b"later"), ("output", b"1")])
    store.append_records(kept, [("output", b"2")])
    assert store.read_records(removed) == []
    assert [r.payload for r in store.read_records(kept)] == [b"2"]


def test_a_parent_settles_with_its_last_child(store: Store) -> None:
    parent = _new(store, output_mode=CHILDREN)
    children = [_new(store, parent_id=parent, position=i) for i in range(2)]
    any_state = frozenset(JobState)
    store.compare_and_set_state(children[0], any_state, JobState.Running)
    assert store.get_job(parent).state is JobState.Running
    store.compare_and_set_state(children[0], any_state, JobState.Failed)
    assert store.get_job(parent).state is JobState.Running
    store.compare_and_set_state(children[1], any_state, JobState.Completed)
    assert store.get_job(parent).state is JobState.Failed
    assert [r.id for r in store.list_jobs(parent_id=parent)] == children
    assert [r.id for r in store.list_jobs(top_level=True)] == [parent]
    store.delete_jobs([parent])
    assert store.list_jobs() == []


def test_list_by_session(store: Store) -> None:
    a = _new(store, session_id="a")
    _new(store, session_id="b")
    assert [r.id for r in store.list_jobs(session_id="a")] == [a]


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "private" / "jobs.db"
    SQLiteStore(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not an asjob job store"):
        SQLiteStore(path)


def test_sqlite_refuses_another_programs_database_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE jobs (id INTEGER)")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"not an asjob job store: .* tables of its own \(jobs\)"):
        SQLiteStore(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["app.db"]


def test_sqlite_initialises_a_database_without_tables(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 7")  # a database file, but nothing in it
    conn.close()
    assert _new(SQLiteStore(path)) == 1


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    SQLiteStore(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer asjob"):
        SQLiteStore(path)


def test_sqlite_gives_back_the_pages_of_removed_jobs_and_received_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteStore(path)

    def pages() -> int:
        with sqlite3.connect(path) as conn:  # sees the write-ahead log too
            return int(conn.execute("PRAGMA page_count").fetchone()[0])

    kept = FREE_PAGES_KEPT + 20  # for the records to come, and the tables' own
    removed, received = _new(store), _new(store)
    store.append_records(removed, [("output", bytes(20_000_000))])
    assert pages() > 4 * kept
    store.delete_jobs([removed])
    assert pages() <= kept
    store.append_records(received, [("information", bytes(10_000))] * 2000)
    assert pages() > 4 * kept
    store.remove_records(received, [r.seq for r in store.read_records(received)[:1000]])
    store.read_records(received, remove=True)
    assert pages() <= kept


def test_sqlite_refuses_a_special_file_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    os.mkfifo(path, 0o644)  # as a device would be (root's /dev/null): never opened
    with pytest.raises(UnsafeFileError, match="it is a named pipe, not a regular file"):
        SQLiteStore(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["jobs.db"]


def test_sqlite_names_a_state_it_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    job_id = _new(SQLiteStore(path))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE jobs SET state = 'Hibernating'")
    conn.close()
    with pytest.raises(StoreError, match=rf"job {job_id} is in a state .* \('Hibernating'\)"):
        SQLiteStore(path).get_job(job_id)


def test_sqlite_is_shared_between_handles(tmp_path: Path) -> None:
    one, two = SQLiteStore(tmp_path / "jobs.db"), SQLiteStore(tmp_path / "jobs.db")
    job_id = _new(one)
    assert two.get_job(job_id).command == "f()"


def test_states_reads_those_that_exist(store: Store) -> None:
    first, second = _new(store), _new(store)
    store.compare_and_set_state(second, frozenset({JobState.NotStarted}), JobState.Running)
    assert store.states([first, second, 999]) == {
        first: JobState.NotStarted,
        second: JobState.Running,
    }
    # More ids than one SQLite statement may carry.
    assert store.states(range(1, 1200)) == store.states([first, second])


def test_sqlite_store_deleted_while_in_use_raises_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = SQLiteStore(path)
    job_id = _new(store)
    for leftover in tmp_path.iterdir():
        leftover.unlink()
    store._idle_readers.clear()  # the next read opens a connection, as a new thread's does
    with pytest.raises(StoreError, match="no longer exists"):
        store.get_job(job_id)
    # Not made again, with the umask's permissions, by a process that only opens it.
    with pytest.raises(StoreError, match="no longer exists"):
        SQLiteStore(path, initialise=False).get_job(job_id)
    assert list(tmp_path.iterdir()) == []


_DELETES_ITS_STORE = """
import glob, os, asjob
from tests import jobfuncs as f
job = asjob.start_job(f.sleep_then, 30, kind="thread")
for path in glob.glob(os.environ["ASJOB_STORE"] + "*"):
    os.remove(path)
asjob.session.current_session().store._idle_readers.clear()  # next reads open the path anew
"""


def test_a_store_gone_bad_at_exit_is_reported_in_one_line(store_path: Path, tmp_path: Path) -> None:
    done = Cli(store_path, tmp_path).python(_DELETES_ITS_STORE)
    assert done.returncode == 0
    assert done.stderr.startswith("asjob: could not stop this session's jobs at exit: ")
    assert "no longer exists" in done.stderr and "Traceback" not in done.stderr
