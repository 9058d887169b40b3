"""Receiving never loses data (SPEC section 4, receive_job).

What cannot be decoded in the receiving process stays in the store; a job that raises among
several leaves the others' data receivable; two receivers never get the same value; classes of
the caller's ``__main__`` script come back as themselves; a thread job's values are the live
objects, never unpickled copies.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import asjob
from asjob import records
from asjob.receiving import deliver, take
from asjob.session import Session, current_session
from asjob.store.base import NewJob, Store
from tests import jobfuncs as f

# -- job functions (process workers import them from here) -------------------------------------

_THING = "class Thing:\n    def __init__(self, value):\n        self.value = value\n"


def _private_module(directory: str, name: str) -> Any:
    """Write and import module ``name`` in ``directory``: in a worker, a module the caller
    cannot import until it puts ``directory`` on its path."""
    (Path(directory) / f"{name}.py").write_text(_THING)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    return importlib.import_module(name)


def private_thing(directory: str, name: str, value: Any) -> Any:
    return _private_module(directory, name).Thing(value)


def around_a_private_thing(directory: str, name: str) -> Iterator[Any]:
    yield "before"
    yield _private_module(directory, name).Thing("private")
    yield "after"


# Set in the caller only: a job's worker never unpickles its own values.
REFUSE_TO_UNPICKLE = False


class Fragile:
    """Pickles anywhere; unpickling raises while ``REFUSE_TO_UNPICKLE`` is set (as a
    ``__setstate__`` that fails in the receiving process would)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_fragile, (self.value,))


def _rebuild_fragile(value: Any) -> Fragile:
    if REFUSE_TO_UNPICKLE:
        raise RuntimeError(f"Fragile({value!r}) refuses to be unpickled here")
    return Fragile(value)


def fragile(value: Any) -> Fragile:
    return Fragile(value)


def fragiles(n: int) -> Iterator[Fragile]:
    for i in range(n):
        yield Fragile(i)


@pytest.fixture
def private(tmp_path: Path) -> tuple[Path, str]:
    """A directory for a worker-only module, and a module name no test used before."""
    directory = tmp_path / "private"
    directory.mkdir()
    return directory, f"private_{uuid.uuid4().hex}"


# -- nothing is removed unless it was decoded --------------------------------------------------


def test_an_undecodable_result_raises_and_stays_receivable(
    session: Session, private: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, name = private
    job = asjob.start_job(private_thing, str(directory), name, 7)
    asjob.wait_job(job)
    for _ in range(2):  # a failed decode removes nothing, so the next one meets it again
        with pytest.raises(asjob.AsJobError, match=f"No module named '{name}'") as caught:
            job.receive()
        assert caught.value.job_id == job.id
        assert f"job {job.id}: output value 0" in str(caught.value)
        assert isinstance(caught.value.__cause__, ModuleNotFoundError)
        assert job.has_more_data
    monkeypatch.syspath_prepend(str(directory))  # now this process can import it
    assert job.receive().value == 7
    assert job.receive() is None
    assert not job.has_more_data


def test_a_generator_batch_with_an_undecodable_item_loses_no_item(
    session: Session, private: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, name = private
    job = asjob.start_job(around_a_private_thing, str(directory), name)
    asjob.wait_job(job)
    with pytest.raises(asjob.AsJobError, match=f"output value 1 .*No module named '{name}'"):
        job.receive()
    monkeypatch.syspath_prepend(str(directory))
    before, thing, after = job.receive()
    assert (before, thing.value, after) == ("before", "private", "after")
    assert job.receive() == []


def test_a_result_whose_unpickling_raises_stays_receivable(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = asjob.start_job(fragile, "kept")
    asjob.wait_job(job)
    monkeypatch.setattr(sys.modules[__name__], "REFUSE_TO_UNPICKLE", True)
    with pytest.raises(asjob.AsJobError, match="refuses to be unpickled") as caught:
        job.receive()
    assert isinstance(caught.value.__cause__, RuntimeError)
    with pytest.raises(asjob.AsJobError):
        job.output  # noqa: B018 - peeking decodes too
    monkeypatch.setattr(sys.modules[__name__], "REFUSE_TO_UNPICKLE", False)
    assert job.receive().value == "kept"


def test_a_thread_job_hands_back_live_objects_without_unpickling(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "REFUSE_TO_UNPICKLE", True)
    single = asjob.start_job(fragile, "live", kind="thread")
    several = asjob.start_job(fragiles, 3, kind="thread")
    asjob.wait_job([single, several])
    assert [item.value for item in several.output] == [0, 1, 2]
    assert single.receive().value == "live"
    assert [item.value for item in several.receive()] == [0, 1, 2]


# -- several jobs: one that raises leaves the others' data --------------------------------------


@pytest.mark.parametrize(
    ("fn", "args", "expected"),
    [(f.add, (2, 3), 5), (f.count, (3,), [0, 1, 2])],
    ids=["function", "generator"],
)
def test_a_failed_job_among_several_leaves_the_others_receivable(
    kind: str, fn: Any, args: tuple[Any, ...], expected: Any
) -> None:
    ok = asjob.start_job(fn, *args, kind=kind)
    failed = asjob.start_job(f.count_then_fail, 2, kind=kind)
    asjob.wait_job([ok, failed])
    with pytest.raises(ValueError, match="failed after 2") as caught:
        asjob.receive_job([ok, failed])
    assert caught.value.partial_output == [0, 1]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="failed after 2"):
        asjob.receive_job([failed, ok])
    assert ok.has_more_data
    assert asjob.receive_job([ok]) == [expected]
    assert not ok.has_more_data


def test_an_undecodable_job_among_several_leaves_the_others_receivable(
    session: Session, private: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, name = private
    first = asjob.start_job(f.count, 2)
    odd = asjob.start_job(private_thing, str(directory), name, "odd")
    last = asjob.start_job(f.add, 1, 1)
    jobs = [first, odd, last]
    asjob.wait_job(jobs)
    with pytest.raises(asjob.AsJobError, match=f"job {odd.id}: "):
        asjob.receive_job(jobs)
    assert all(job.has_more_data for job in jobs)
    monkeypatch.syspath_prepend(str(directory))
    counted, thing, added = asjob.receive_job(jobs)
    assert (counted, thing.value, added) == ([0, 1], "odd", 2)


# -- concurrent receivers ----------------------------------------------------------------------


def test_two_receivers_that_read_the_same_records_never_share_a_value(kind: str) -> None:
    session = current_session()
    value_job = asjob.start_job(f.add, 20, 22, kind=kind)
    generator_job = asjob.start_job(f.count, 3, kind=kind)
    asjob.wait_job([value_job, generator_job])
    for job, expected, nothing in ((value_job, 42, None), (generator_job, [0, 1, 2], [])):
        first, second = take(session, job), take(session, job)
        assert deliver(session, second, keep=False) == expected
        assert deliver(session, first, keep=False) == nothing


def test_racing_receivers_get_every_item_once(session: Session) -> None:
    job = asjob.start_job(f.count, 2000, kind="thread")
    got: list[list[int]] = [[] for _ in range(4)]

    def receive(mine: list[int]) -> None:
        while True:
            finished = job.state.finished
            mine.extend(job.receive())
            if finished and not job.has_more_data:
                return

    threads = [threading.Thread(target=receive, args=(mine,)) for mine in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    received = [item for mine in got for item in mine]
    assert sorted(received) == list(range(2000))
    for mine in got:
        assert mine == sorted(mine)  # each receiver's slices stay in order


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return asjob.MemoryStore()
    return asjob.SQLiteStore(tmp_path / "records.db")


def test_remove_records_removes_each_row_once(store: Store) -> None:
    job_id = store.create_job(NewJob("", "c()", "BackgroundJob", "process", "s")).id
    other_id = store.create_job(NewJob("", "d()", "BackgroundJob", "process", "s")).id
    store.append_records(job_id, [("output", str(i).encode()) for i in range(1200)])
    store.append_records(other_id, [("output", b"other")])
    seen_by_one = [row.seq for row in store.read_records(job_id)]
    seen_by_two = [row.seq for row in store.read_records(job_id)]
    # The other job's row is not this job's to remove.
    other_seq = store.read_records(other_id)[0].seq
    assert store.remove_records(job_id, [*seen_by_one[:700], other_seq]) == set(seen_by_one[:700])
    assert store.remove_records(job_id, seen_by_two) == set(seen_by_two[700:])
    assert store.remove_records(job_id, seen_by_one) == set()
    assert store.read_records(job_id) == []
    assert [row.payload for row in store.read_records(other_id)] == [b"other"]
    assert store.get_job(job_id).unreceived == 0


# -- classes of the caller's __main__ script ---------------------------------------------------


def test_a_real_mp_main_module_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    real = types.ModuleType("__mp_main__")
    monkeypatch.setitem(sys.modules, "__mp_main__", real)
    records.alias_main_module()
    assert sys.modules["__mp_main__"] is real
    monkeypatch.delitem(sys.modules, "__mp_main__")
    records.alias_main_module()
    assert sys.modules["__mp_main__"] is sys.modules["__main__"]


# -- the stored form of output values -----------------------------------------------------------

# OutputItem(3, {"a": 1}) as stored before values were pickled on their own (a dataclass).
_EARLIER_OUTPUT_RECORD = (
    b"\x80\x05\x95C\x00\x00\x00\x00\x00\x00\x00\x8c\rasjob.records\x94\x8c\nOutputItem\x94"
    b"\x93\x94)\x81\x94}\x94(\x8c\x05index\x94K\x03\x8c\x05value\x94}\x94\x8c\x01a\x94K\x01sub."
)


def test_output_records_keep_the_value_pickled_until_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    item = records.decode(records.encode(records.OutputItem(5, Fragile("x"))))
    monkeypatch.setattr(sys.modules[__name__], "REFUSE_TO_UNPICKLE", True)
    assert item.index == 5  # read without unpickling the value
    with pytest.raises(RuntimeError, match="refuses"):
        item.value  # noqa: B018
    monkeypatch.setattr(sys.modules[__name__], "REFUSE_TO_UNPICKLE", False)
    assert item.value.value == "x"
    earlier = records.decode(_EARLIER_OUTPUT_RECORD)
    assert (earlier.index, earlier.value) == (3, {"a": 1})
