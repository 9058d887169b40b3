"""Records in batches while they come fast (asjob.worker.batching), on a real store."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from asjob import SQLiteStore
from asjob.store.base import NewJob
from asjob.worker.batching import BatchingSink


class CountingStore(SQLiteStore):
    """Counts the transactions that append records."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.appends = 0

    def append_records(self, job_id: int, records: Sequence[tuple[str, bytes]]) -> None:
        self.appends += 1
        super().append_records(job_id, records)


def _store_and_job(tmp_path: Path) -> tuple[CountingStore, int]:
    store = CountingStore(tmp_path / "jobs.db")
    job = store.create_job(
        NewJob(name="", command="c", job_type_name="T", kind="thread", session_id="s")
    )
    return store, job.id


def _payloads(store: CountingStore, job_id: int) -> list[bytes]:
    return [row.payload for row in store.read_records(job_id)]


def test_a_record_after_a_quiet_spell_is_written_at_once(tmp_path: Path) -> None:
    store, job_id = _store_and_job(tmp_path)
    sink = BatchingSink(store, job_id, window=0.05)
    sink("information", b"first")
    assert _payloads(store, job_id) == [b"first"]  # no window to wait for
    time.sleep(0.1)
    sink("information", b"after a pause")
    assert _payloads(store, job_id) == [b"first", b"after a pause"]


def test_a_burst_is_written_in_few_transactions_in_order(tmp_path: Path) -> None:
    store, job_id = _store_and_job(tmp_path)
    sink = BatchingSink(store, job_id, window=0.05)
    sent = [f"line {i}".encode() for i in range(5000)]
    writers = [
        threading.Thread(target=lambda part=part: [sink("information", p) for p in part])
        for part in (sent[:2500], sent[2500:])
    ]
    for writer in writers:  # one after the other: the order is known
        writer.start()
        writer.join()
    sink.flush()
    assert _payloads(store, job_id) == sent
    assert store.appends < 100  # not one per record


def test_the_flusher_writes_a_burst_and_then_ends(tmp_path: Path) -> None:
    store, job_id = _store_and_job(tmp_path)
    sink = BatchingSink(store, job_id, window=0.05)
    for i in range(3):
        sink("progress", bytes([i]))
    deadline = time.monotonic() + 10
    while len(_payloads(store, job_id)) < 3 or any(
        t.name == "asjob-record-batches" for t in threading.enumerate()
    ):
        assert time.monotonic() < deadline, "the burst's tail was never written"
        time.sleep(0.01)
    assert _payloads(store, job_id) == [b"\x00", b"\x01", b"\x02"]
