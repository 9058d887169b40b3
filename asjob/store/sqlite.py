"""The default store: one SQLite file shared by every process that manages jobs.

WAL mode lets readers run while a writer commits; every write is one short transaction: a
single statement on its own, or several in ``BEGIN IMMEDIATE`` (taking the write lock up front,
so two writers never deadlock upgrading a read lock). Writers queue rather than fail with
"database is locked": threads of one process take a lock of their own first, and processes
retry with short randomised pauses. (SQLite's own busy handler backs off to 100 ms sleeps,
which starves writers when a hundred jobs finish at once.) A process has one connection for
writes (used under that lock) and a few for reads, each used by one thread at a time; a forked
child opens its own, since SQLite connections must not cross a fork. The file and its directory
are created owner-only before SQLite touches them; SQLite gives its -wal and -shm files the
same mode. Opening an existing file tightens it to owner-only, and refuses (untouched) an
SQLite database that some other program made.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ..errors import JobNotFoundError, StoreError, UnsafeFileError
from ..private_files import check_private, make_private_directory
from ..states import JobState
from .base import (
    SCHEMA_VERSION,
    JobRecord,
    NewJob,
    StreamRow,
    check_fields,
    now,
    settled_parent_state,
)

_T = TypeVar("_T")

BUSY_TIMEOUT_S = 30.0
# Readers never wait for writers in WAL mode; this only covers rare moments such as a WAL reset
# or recovery by a process opening the file.
READ_BUSY_TIMEOUT_S = 5.0
WAL_SIZE_LIMIT = 8 * 1024 * 1024
# Connections kept open for reads between uses, per store handle and process.
MAX_IDLE_READERS = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    name TEXT NOT NULL,
    command TEXT NOT NULL,
    job_type_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    location TEXT NOT NULL,
    state TEXT NOT NULL,
    session_id TEXT NOT NULL,
    parent_id INTEGER,
    position INTEGER NOT NULL DEFAULT 0,
    output_mode TEXT NOT NULL,
    detached INTEGER NOT NULL DEFAULT 0,
    host_pid INTEGER,
    host_started REAL,
    created REAL NOT NULL,
    begin_time REAL,
    end_time REAL,
    reason BLOB,
    resume_data TEXT
);
CREATE INDEX IF NOT EXISTS jobs_session ON jobs (session_id);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent_id);
CREATE TABLE IF NOT EXISTS records (
    job_id INTEGER NOT NULL,
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_job ON records (job_id, seq);
CREATE TABLE IF NOT EXISTS holds (key TEXT PRIMARY KEY, until REAL NOT NULL);
"""
# A job created without a name is called Job<id>, in the INSERT's own statement.
_NAME_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS jobs_default_name AFTER INSERT ON jobs WHEN NEW.name = ''
BEGIN UPDATE jobs SET name = 'Job' || NEW.id WHERE id = NEW.id; END
"""
_INSERT_JOB = (
    "INSERT INTO jobs (instance_id, name, command, job_type_name, kind, location, state, "
    "session_id, parent_id, position, output_mode, detached, host_pid, host_started, created, "
    "begin_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)

_COLUMNS = (
    "id, instance_id, name, command, job_type_name, kind, location, state, session_id, "
    "parent_id, position, output_mode, detached, host_pid, host_started, created, begin_time, "
    "end_time, reason, resume_data, "
    "(SELECT COUNT(*) FROM records r WHERE r.job_id = jobs.id) AS unreceived"
)


# What Get-Job shows of the top-level jobs: a fifth of the cost of full records on a big store.
_SUMMARY_QUERY = (
    "SELECT id, name, state, location, command, job_type_name, output_mode, begin_time, "
    "end_time, EXISTS (SELECT 1 FROM records r WHERE r.job_id = jobs.id) FROM jobs "
    "WHERE parent_id IS NULL ORDER BY id"
)


class JobSummary(NamedTuple):
    """A top-level job as a listing shows it. ``state`` is a :class:`JobState` value;
    ``any_unreceived`` is 1 if stream records wait to be received, else 0."""

    id: int
    name: str
    state: str
    location: str
    command: str
    job_type_name: str
    output_mode: str
    begin_time: float | None
    end_time: float | None
    any_unreceived: int


def _state(job_id: int, value: str) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        raise StoreError(
            f"job {job_id} is in a state this asjob does not know ({value!r}): "
            "was the store written by a newer asjob?"
        ) from None


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row[0],
        instance_id=uuid.UUID(row[1]),
        name=row[2],
        command=row[3],
        job_type_name=row[4],
        kind=row[5],
        location=row[6],
        state=_state(row[0], row[7]),
        session_id=row[8],
        parent_id=row[9],
        position=row[10],
        output_mode=row[11],
        detached=bool(row[12]),
        host_pid=row[13],
        host_started=row[14],
        created=row[15],
        begin_time=row[16],
        end_time=row[17],
        reason=row[18],
        resume_data=row[19],
        unreceived=row[20],
    )


# A record for a job removed meanwhile is dropped (a stopped job's last batch can be flushed
# after a forced remove): no row may outlive its job, whose id is never used again.
_APPEND_RECORD = (
    "INSERT INTO records (job_id, stream, payload) "
    "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?)"
)

FREE_PAGES_KEPT = 1024
"""Free pages a store keeps for the records to come (4 MB at SQLite's default page size);
those beyond go back to the file system."""

_process_locks: dict[Path, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(path: Path) -> threading.Lock:
    """One lock per store file and process, shared by every handle on it."""
    with _process_locks_guard:
        return _process_locks.setdefault(path, threading.Lock())


def create_private_file(path: Path) -> None:
    """Create ``path`` (and its directory) readable by the owner only, if it does not exist;
    refuse a store other users could replace (see :mod:`asjob.private_files`)."""
    make_private_directory(path.parent)
    for own in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        check_private(own, "the job store")
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


class SQLiteStore:
    """A :class:`~asjob.store.base.Store` in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str], *, initialise: bool = True) -> None:
        """Open the store at ``path``, creating it (owner-only) and its schema if needed.
        ``initialise=False`` skips that for a process that knows the store exists (a worker)."""
        self._path = Path(path).expanduser().absolute()
        self._thread_lock = _process_lock(self._path)
        # Connections are shared by the threads of a process (one at a time each), not opened
        # per thread: a hundred job threads would each open, and read the schema, for a few
        # statements. None crosses a fork.
        self._pid = os.getpid()
        self._writer: sqlite3.Connection | None = None
        self._idle_readers: list[sqlite3.Connection] = []
        self._incremental: bool | None = None  # whether the file gives free pages back
        if not initialise:
            return
        existed = self._path.exists()
        try:
            create_private_file(self._path)
        except UnsafeFileError:
            raise
        except OSError as exc:
            raise StoreError(self._open_failure(exc, existed)) from None
        try:
            self._open_existing_or_new()
        except BaseException:
            self._close_writer()  # a refused file is left as it was, with no -wal or -shm
            raise

    @property
    def path(self) -> str:
        return str(self._path)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- connections -------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        # No busy wait inside SQLite: writers queue with our own short pauses (SQLite's
        # handler sleeps up to 100 ms at a time), readers retry the same way.
        # mode=rw: the file exists (made private by create_private_file); if it has been
        # deleted meanwhile, SQLite must not make a new one with the umask's permissions.
        conn = sqlite3.connect(
            f"{self._path.as_uri()}?mode=rw",
            uri=True,
            timeout=0,
            isolation_level=None,
            check_same_thread=False,
        )
        # The first statement reads the schema, and meets the locks any statement can.
        self._retry_while_busy(
            lambda: conn.execute("PRAGMA synchronous=NORMAL"), READ_BUSY_TIMEOUT_S
        )
        # When a checkpoint lets the write-ahead log start over, cut it back to this size:
        # a burst of writes does not leave its high-water mark on disk for the store's life.
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        return conn

    def _forget_if_forked(self) -> None:
        """A forked child must not use its parent's connections: start afresh."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._writer = None
            self._idle_readers = []

    def _writer_connection(self) -> sqlite3.Connection:
        """The process's one writing connection; only used under ``_thread_lock``."""
        self._forget_if_forked()
        if self._writer is None:
            self._writer = self._open()
        return self._writer

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """An idle connection for one read, opened if none is idle, kept for the next."""
        self._forget_if_forked()
        idle = self._idle_readers
        try:
            conn = idle.pop()  # atomic: two threads never get the same connection
        except IndexError:
            conn = self._open()
        try:
            yield conn
        finally:
            if len(idle) < MAX_IDLE_READERS and idle is self._idle_readers:
                idle.append(conn)
            else:
                conn.close()

    @contextlib.contextmanager
    def _translated_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            if "not a database" in str(exc) or "malformed" in str(exc):
                raise StoreError(f"{self._path} is not an asjob job store ({exc})") from None
            if "readonly" in str(exc) or "unable to open" in str(exc):
                # A read-only file system or directory, or a file made read-only meanwhile.
                raise StoreError(self._unwritable(exc)) from None
            if "no such table" in str(exc):
                raise StoreError(
                    f"the job store {self._path} has lost its tables: was it deleted or "
                    "replaced while in use?"
                ) from None
            raise StoreError(f"the job store {self._path} failed: {exc}") from exc

    def _switch_to_wal(self) -> None:
        with self._thread_lock:
            conn = self._writer_connection()
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                # A new store (set before its first table, or ignored): the pages of removed
                # jobs go back to the file system (see delete_jobs), not only to later jobs.
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("PRAGMA journal_mode=WAL")

    def _retry_while_busy(self, attempt: Callable[[], _T], timeout: float = BUSY_TIMEOUT_S) -> _T:
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"the job store {self._path} stayed locked for {timeout:.0f} s"
                    ) from None
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, 0.005)

    def _read(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._translated_errors(), self._reader() as conn:
            return self._retry_while_busy(
                lambda: conn.execute(query, params).fetchall(), READ_BUSY_TIMEOUT_S
            )

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._thread_lock, self._translated_errors():
            conn = self._writer_connection()
            self._retry_while_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _write_statement(self, statement: str, params: Sequence[Any]) -> int | None:
        """Run one writing statement as a transaction of its own; return the row id it
        inserted, if any. Among a hundred busy job threads, each call into SQLite gives up
        the GIL and waits to get it back: one statement does that once, where BEGIN, the
        statement and COMMIT do it three times."""
        with self._thread_lock, self._translated_errors():
            conn = self._writer_connection()
            cursor = self._retry_while_busy(lambda: conn.execute(statement, params))
            # Closed under the lock: the connection is the next writer's once it is released.
            cursor.close()
            return cursor.lastrowid

    # -- opening ----------------------------------------------------------------------------

    def _open_failure(self, exc: OSError, existed: bool) -> str:
        """Why the store file could not be created, or opened for reading and writing."""
        if existed:
            doing = f"open the job store {self._path} for reading and writing"
        else:
            doing = f"create the job store {self._path}"
        # A failure to create the directory names the directory.
        where = "" if exc.filename in (None, str(self._path)) else f"{exc.filename}: "
        return f"cannot {doing}: {where}{exc.strerror}"

    def _unwritable(self, exc: sqlite3.Error) -> str:
        """Why SQLite could not write the store: usually its directory, where SQLite must
        create the -wal and -shm files even when the store file itself is writable."""
        directory = self._path.parent
        if not self._path.exists():
            return f"the job store {self._path} no longer exists (was it deleted while in use?)"
        if not os.access(directory, os.W_OK | os.X_OK):
            why = f"its directory {directory} is not writable (SQLite keeps -wal and -shm there)"
        elif not os.access(self._path, os.R_OK | os.W_OK):
            why = "the file is not readable and writable"
        else:
            why = str(exc)
        return f"cannot write the job store {self._path}: {why}"

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open_existing_or_new(self) -> None:
        with self._translated_errors():
            self._refuse_a_foreign_database()
            self._make_private()
            self._initialise()

    def _refuse_a_foreign_database(self) -> None:
        """Refuse an SQLite database that some other program made, before anything here
        changes it (its journal mode, new tables). A database without tables, such as the
        empty file just created, is the store's to initialise."""

        def names() -> list[str]:
            with self._thread_lock:
                rows = self._writer_connection().execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
                )
                return [row[0] for row in rows.fetchall()]

        tables = self._retry_while_busy(names, READ_BUSY_TIMEOUT_S)
        if not tables or self._retry_while_busy(self._has_schema_version, READ_BUSY_TIMEOUT_S):
            return
        shown = ", ".join(tables[:5]) + (", …" if len(tables) > 5 else "")
        raise StoreError(
            f"{self._path} is not an asjob job store: it is an SQLite database with tables of "
            f"its own ({shown}); asjob left it untouched"
        )

    def _has_schema_version(self) -> bool:
        """Whether the database carries asjob's marker: a ``meta`` row naming its schema."""
        with self._thread_lock:
            try:
                row = (
                    self._writer_connection()
                    .execute("SELECT 1 FROM meta WHERE key = 'schema_version'")
                    .fetchone()
                )
            except sqlite3.OperationalError as exc:
                if "no such" not in str(exc):  # no such table or column: someone else's meta
                    raise
                return False
        return row is not None

    def _make_private(self) -> None:
        """Tighten a store made readable by others (by hand, or by a copy) to owner-only, as
        the spec requires; its -wal and -shm files too, since SQLite copies the store's mode
        when it creates them. Only files this user owns: another user's store is theirs."""
        for path in (self._path, Path(f"{self._path}-wal"), Path(f"{self._path}-shm")):
            try:
                status = path.stat()
                if status.st_uid == os.geteuid() and status.st_mode & 0o077:
                    path.chmod(stat.S_IMODE(status.st_mode) & 0o700)
            except OSError:
                # Gone meanwhile (another process closed the last connection), or a file
                # system without Unix modes: the store still works.
                continue

    def _initialise(self) -> None:
        # WAL is a property of the file, so setting it once is enough; it cannot change
        # inside a transaction. Processes creating a new store at the same moment race to
        # set it, and SQLite refuses the switch at once (no busy wait) while another holds a
        # lock: retry like a writer.
        self._retry_while_busy(self._switch_to_wal)
        with self._write() as conn:
            # executescript would commit the open transaction: run the statements one by one.
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute(_NAME_TRIGGER)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(
                    f"the job store {self._path} was written by a newer asjob "
                    f"(schema {row[0]}, this asjob reads up to {SCHEMA_VERSION}): upgrade asjob"
                )

    # -- jobs -------------------------------------------------------------------------------

    def create_job(self, new: NewJob) -> JobRecord:
        created = now()
        values = (
            str(new.instance_id),
            new.name,
            new.command,
            new.job_type_name,
            new.kind,
            new.location,
            new.state.value,
            new.session_id,
            new.parent_id,
            new.position,
            new.output_mode,
            int(new.detached),
            new.host_pid,
            new.host_started,
            created,
            created if new.state is JobState.Running else None,
        )
        if new.parent_id is not None and new.state is JobState.Running:
            with self._write() as conn:  # the parent starts Running in the same transaction
                job_id = conn.execute(_INSERT_JOB, values).lastrowid
                self._settle_parent(conn, new.parent_id, new.state)
        else:
            job_id = self._write_statement(_INSERT_JOB, values)
        assert job_id is not None
        return new.record(job_id, created)

    def get_job(self, job_id: int) -> JobRecord:
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JobNotFoundError(f"no job with id {job_id}", job_id)
        return _record(rows[0])

    def list_jobs(
        self,
        *,
        session_id: str | None = None,
        parent_id: int | None = None,
        top_level: bool = False,
    ) -> list[JobRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if session_id is not None:
            clauses.append("session_id = ?")
            params.append(session_id)
        if parent_id is not None:
            clauses.append("parent_id = ?")
            params.append(parent_id)
        if top_level:
            clauses.append("parent_id IS NULL")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs{where} ORDER BY id", params)
        return [_record(r) for r in rows]

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        ids = list(job_ids)
        found: dict[int, JobState] = {}
        # In slices: SQLite caps the parameters of one statement (999 before 3.32).
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            query = f"SELECT id, state FROM jobs WHERE id IN ({','.join('?' * len(batch))})"
            found.update((row[0], JobState(row[1])) for row in self._read(query, batch))
        return found

    def list_summaries(self) -> list[JobSummary]:
        """Top-level jobs sorted by id, only what a listing shows: for ``asjob get``, which
        must stay fast on a store of thousands of jobs. (Not part of the Store contract.)"""
        return [JobSummary._make(row) for row in self._read(_SUMMARY_QUERY)]

    def compare_and_set_state(
        self,
        job_id: int,
        sources: frozenset[JobState],
        target: JobState,
        *,
        records: Sequence[tuple[str, bytes]] = (),
        **fields: Any,
    ) -> bool:
        check_fields(fields)
        if not sources:
            return False
        with self._write() as conn:
            row = conn.execute(
                "SELECT state, parent_id, begin_time FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None or JobState(row[0]) not in sources:
                return False
            if target is JobState.Running and row[2] is None:
                fields.setdefault("begin_time", now())
            if target.finished:
                fields.setdefault("end_time", now())
            self._set(conn, job_id, state=target.value, **fields)
            self._append(conn, job_id, records)
            if row[1] is not None:
                self._settle_parent(conn, row[1], target)
            return True

    def _set(self, conn: sqlite3.Connection, job_id: int, **fields: Any) -> None:
        if fields:
            assignments = ", ".join(f"{name} = ?" for name in fields)
            conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id))

    def _settle_parent(self, conn: sqlite3.Connection, parent_id: int, child: JobState) -> None:
        parent_state = JobState(
            conn.execute("SELECT state FROM jobs WHERE id = ?", (parent_id,)).fetchone()[0]
        )
        if child is JobState.Running and parent_state is JobState.NotStarted:
            self._set(conn, parent_id, state=JobState.Running.value, begin_time=now())
        elif child.finished and not parent_state.finished:
            children = conn.execute(
                "SELECT state FROM jobs WHERE parent_id = ?", (parent_id,)
            ).fetchall()
            settled = settled_parent_state(parent_state, (JobState(c[0]) for c in children))
            if settled is not None:
                self._set(conn, parent_id, state=settled.value, end_time=now())

    def update(self, job_id: int, **fields: Any) -> None:
        check_fields(fields)
        if fields:
            assignments = ", ".join(f"{name} = ?" for name in fields)
            self._write_statement(
                f"UPDATE jobs SET {assignments} WHERE id = ?", (*fields.values(), job_id)
            )

    def delete_jobs(self, job_ids: Sequence[int]) -> None:
        with self._write() as conn:
            for job_id in job_ids:
                ids = [job_id] + [
                    r[0] for r in conn.execute("SELECT id FROM jobs WHERE parent_id = ?", (job_id,))
                ]
                marks = ",".join("?" * len(ids))
                conn.execute(f"DELETE FROM records WHERE job_id IN ({marks})", ids)
                conn.execute(f"DELETE FROM jobs WHERE id IN ({marks})", ids)
        self._give_back_free_pages()

    def _give_back_free_pages(self) -> None:
        """Shrink the file by the free pages beyond :data:`FREE_PAGES_KEPT` (those of removed
        jobs, of received records). A store made before asjob set incremental auto-vacuum on
        new stores keeps them all for the records to come instead."""
        with self._thread_lock, self._translated_errors():
            conn = self._writer_connection()
            if self._incremental is None:
                self._incremental = conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            if not self._incremental:
                return
            spare = conn.execute("PRAGMA freelist_count").fetchone()[0] - FREE_PAGES_KEPT
            if spare > 0:
                # executescript, not execute: it runs the pragma to its end (execute frees
                # one page).
                vacuum = f"PRAGMA incremental_vacuum({spare});"
                self._retry_while_busy(lambda: conn.executescript(vacuum))

    # -- holds ------------------------------------------------------------------------------

    def hold(self, key: str, until: float) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM holds WHERE until <= ?", (now(),))
            conn.execute(
                "INSERT INTO holds (key, until) VALUES (?, ?) ON CONFLICT (key) "
                "DO UPDATE SET until = MAX(until, excluded.until)",
                (key, until),
            )

    def held_until(self, key: str) -> float | None:
        rows = self._read("SELECT until FROM holds WHERE key = ? AND until > ?", (key, now()))
        return float(rows[0][0]) if rows else None

    # -- stream records ---------------------------------------------------------------------

    @staticmethod
    def _append(
        conn: sqlite3.Connection, job_id: int, records: Sequence[tuple[str, bytes]]
    ) -> None:
        if records:
            conn.executemany(_APPEND_RECORD, [(job_id, s, p, job_id) for s, p in records])

    def append_records(self, job_id: int, records: Sequence[tuple[str, bytes]]) -> None:
        if len(records) == 1:  # the usual case: one progress record, one printed line
            ((stream, payload),) = records
            self._write_statement(_APPEND_RECORD, (job_id, stream, payload, job_id))
            return
        with self._write() as conn:
            self._append(conn, job_id, records)

    def read_records(
        self,
        job_id: int,
        *,
        streams: Iterable[str] | None = None,
        remove: bool = False,
    ) -> list[StreamRow]:
        names = None if streams is None else list(streams)
        only = "" if names is None else f" AND stream IN ({','.join('?' * len(names))})"
        query = f"SELECT job_id, seq, stream, payload FROM records WHERE job_id = ?{only}"
        params: list[Any] = [job_id, *(names or [])]
        query += " ORDER BY seq"
        if not remove:
            return [StreamRow(*r) for r in self._read(query, params)]
        with self._write() as conn:
            rows = conn.execute(query, params).fetchall()
            if rows:
                conn.execute(
                    f"DELETE FROM records WHERE job_id = ? AND seq <= ?{only}",
                    (job_id, rows[-1][1], *(names or [])),
                )
        if rows:
            self._give_back_free_pages()
        return [StreamRow(*r) for r in rows]

    def remove_records(self, job_id: int, seqs: Iterable[int]) -> set[int]:
        wanted = sorted(set(seqs))
        if not wanted:
            return set()
        with self._write() as conn:
            # Under the write lock, what is still there is what this call takes: a concurrent
            # receiver that read the same rows and removed them first keeps them.
            present = conn.execute(
                "SELECT seq FROM records WHERE job_id = ? AND seq BETWEEN ? AND ?",
                (job_id, wanted[0], wanted[-1]),
            ).fetchall()
            removed = {row[0] for row in present}.intersection(wanted)
            doomed = sorted(removed)
            # In slices: SQLite caps the parameters of one statement (999 before 3.32).
            for start in range(0, len(doomed), 500):
                batch = doomed[start : start + 500]
                conn.execute(
                    f"DELETE FROM records WHERE seq IN ({','.join('?' * len(batch))})", batch
                )
        if removed:
            self._give_back_free_pages()
        return removed
