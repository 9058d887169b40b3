"""``@as_job``: identity kept, jobs returned, bound methods, fan-out, throttling."""

from __future__ import annotations

import inspect
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

import asjob
from asjob import JobState
from asjob.kinds.thread import ThreadKind
from asjob.session import Session
from tests import jobfuncs as f


def test_the_decorated_function_keeps_its_identity() -> None:
    assert f.decorated_double.__wrapped__(4) == 8
    assert f.decorated_double.__name__ == "decorated_double"
    assert f.decorated_double.__doc__ == "Doubles x."
    assert str(inspect.signature(f.decorated_double)) == "(x: 'int') -> 'int'"


def test_calling_it_starts_a_job(kind: str) -> None:
    wrapped = asjob.as_job(kind=kind)(f.add)
    job = wrapped(20, 22)
    assert isinstance(job, asjob.Job)
    assert job.receive(wait=True) == f.add(20, 22)
    assert job.command == "add(20, 22)"


def test_a_module_level_decorated_function_runs_in_a_worker(session: Session) -> None:
    assert f.decorated_double(21).receive(wait=True) == 42
    assert f.decorated_thread(1).job_type_name == "ThreadJob"


def test_start_job_accepts_a_decorated_function(session: Session) -> None:
    assert asjob.start_job(f.decorated_double, 5).receive(wait=True) == 10


def test_decorating_a_decorated_function_again_replaces_its_options(session: Session) -> None:
    redecorated = asjob.as_job(kind="thread", name="doubler")(f.decorated_double)
    assert redecorated.__wrapped__ is f.decorated_double.__wrapped__
    job = redecorated(4)
    assert (job.job_type_name, job.name) == ("ThreadJob", "doubler")
    assert job.receive(wait=True) == 8  # the value, not a job started by a job


def test_a_bound_method(kind: str) -> None:
    greeter = f.Greeter("hello")
    job = asjob.as_job(greeter.greet, kind=kind)("world")
    assert job.receive(wait=True) == "hello world"


def test_a_decorated_method(kind: str) -> None:
    job = f.Greeter("hi").shout("you") if kind == "process" else f.Greeter("hi").whisper("you")
    assert job.receive(wait=True) in ("HI YOU", "hi you")


def test_name_option(kind: str) -> None:
    job = asjob.as_job(name="adder", kind=kind)(f.add)(1, 1)
    assert job.name == "adder"
    asjob.wait_job(job)


def test_map_fans_out_into_child_jobs(kind: str) -> None:
    parent = asjob.as_job(kind=kind)(f.maybe_fail).map([3, 1, 2])
    children = parent.child_jobs
    assert len(children) == 3
    assert all(isinstance(c, asjob.Job) and c.is_child for c in children)
    assert [c.command for c in children] == ["maybe_fail(3)", "maybe_fail(1)", "maybe_fail(2)"]
    assert parent.command == "maybe_fail.map([3, 1, 2])"
    assert parent.receive(wait=True) == [30, 10, 20]
    assert parent.state is JobState.Completed
    assert all(c.state is JobState.Completed for c in children)
    assert asjob.get_job() == [parent]
    assert set(asjob.get_job(include_child_job=True)) == {parent, *children}
    with pytest.raises(asjob.InvalidJobStateError, match="child job"):
        asjob.remove_job(children[0])
    parent.remove()
    with pytest.raises(asjob.JobNotFoundError):
        asjob.get_job(id=children[0].id)


def test_a_failed_child_fails_the_parent(kind: str) -> None:
    parent = asjob.as_job(kind=kind)(f.maybe_fail).map([1, -2, -3, 4])
    with pytest.raises(ValueError, match="negative: -2") as caught:
        parent.receive(wait=True)
    assert caught.value.partial_output == [10, None, None, 40]  # type: ignore[attr-defined]
    assert parent.state is JobState.Failed
    assert isinstance(parent.reason, ValueError)


def test_stopping_the_parent_stops_the_children(kind: str) -> None:
    parent = asjob.as_job(kind=kind)(f.sleep_then).map([30, 30])
    parent.stop()
    assert parent.state is JobState.Stopped
    assert [c.state for c in parent.child_jobs] == [JobState.Stopped, JobState.Stopped]


def test_map_of_nothing_completes_at_once(kind: str) -> None:
    parent = asjob.as_job(kind=kind)(f.add).map([])
    assert parent.state is JobState.Completed
    assert parent.receive() == []


def test_a_fan_out_whose_children_end_at_once_still_fails_for_a_failed_one(kind: str) -> None:
    # Thread children end as soon as they start: the parent must not settle on the children
    # recorded so far.
    mapped = asjob.as_job(kind=kind)(f.fail_if_negative)
    for _ in range(5):
        parent = mapped.map([1, -1, 2])
        assert asjob.wait_job(parent, timeout=30) == [parent]
        assert parent.state is JobState.Failed
        with pytest.raises(ValueError) as caught:
            parent.receive()
        assert caught.value.partial_output == [10, None, 20]  # type: ignore[attr-defined]


def test_a_fan_out_whose_child_cannot_start_leaves_no_child_waiting_forever(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    launch = ThreadKind.launch
    launches: list[int] = []

    def launch_all_but_the_second(self: ThreadKind, record: Any, *args: Any, **kw: Any) -> None:
        launches.append(record.id)
        if len(launches) == 2:
            raise RuntimeError("no thread for this one")
        launch(self, record, *args, **kw)

    monkeypatch.setattr(ThreadKind, "launch", launch_all_but_the_second)
    with pytest.raises(RuntimeError, match="no thread"):
        asjob.as_job(kind="thread")(f.identity).map([1, 2, 3])
    [parent] = asjob.get_job()
    assert asjob.wait_job(parent, timeout=10) == [parent]
    assert [str(c.state) for c in parent.child_jobs] == ["Completed", "Failed", "Failed"]
    assert parent.state is JobState.Failed


def test_map_refuses_unsendable_items_before_starting_any(session: Session) -> None:
    with pytest.raises(TypeError, match="argument 'value'"):
        asjob.as_job(f.identity).map([1, f.Unpicklable()])
    assert asjob.get_job(include_child_job=True) == []


def _intervals(log: Path) -> dict[int, tuple[float, float]]:
    spans: dict[int, list[float]] = {}
    for line in log.read_text().splitlines():
        _, x, stamp = line.split()
        spans.setdefault(int(x), []).append(float(stamp))
    return {x: (s[0], s[1]) for x, s in spans.items()}


def _intervals_started(log: Path) -> set[int]:
    if not log.exists():
        return set()
    return {
        int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("start")
    }


def test_throttle_limit_runs_at_most_n_at_once_in_order(kind: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    throttled = asjob.as_job(kind=kind, throttle_limit=2)(f.record_start)
    jobs = [throttled(str(log), i, 0.5) for i in range(5)]
    assert [j.state for j in jobs[2:]] == [JobState.NotStarted] * 3
    assert asjob.receive_job(jobs, wait=True) == [0, 1, 2, 3, 4]
    spans = _intervals(log)
    for moment in [start for start, _ in spans.values()]:
        running = sum(1 for start, end in spans.values() if start <= moment < end)
        assert running <= 2
    starts = [spans[i][0] for i in range(5)]
    assert starts[2] >= min(spans[0][1], spans[1][1]) - 0.001
    # Queued jobs get their slots in order; two slots freed at once start two jobs whose
    # first lines may run a hair apart in either order.
    assert all(a <= b + 0.05 for a, b in itertools.pairwise(starts[2:]))


def test_stopping_a_throttled_job_that_has_not_started(kind: str) -> None:
    throttled = asjob.as_job(kind=kind, throttle_limit=1)(f.sleep_then)
    first, waiting = throttled(0.3), throttled(0.01)
    assert waiting.state is JobState.NotStarted
    waiting.stop()
    assert waiting.state is JobState.Stopped
    assert first.receive(wait=True) == "done"


def test_stopping_running_and_queued_jobs_together_never_starts_the_queued(
    kind: str, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    throttled = asjob.as_job(kind=kind, throttle_limit=2)(f.record_start)
    jobs = [throttled(str(log), i, 30) for i in range(3)]
    fan_out = asjob.as_job(kind=kind, throttle_limit=2)(f.sleep_then).map([30, 30, 30, 30])
    deadline = time.monotonic() + 30
    while len(_intervals_started(log)) < 2:
        assert time.monotonic() < deadline, "the first two jobs never started"
        time.sleep(0.01)

    asjob.stop_job([*jobs, fan_out])

    assert [str(j.state) for j in jobs] == ["Stopped"] * 3
    assert [str(c.state) for c in fan_out.child_jobs] == ["Stopped"] * 4
    assert [c.begin_time is None for c in fan_out.child_jobs] == [False, False, True, True]
    time.sleep(0.3)  # a queued job started by the stop would have logged its start by now
    assert _intervals_started(log) == {0, 1}


def test_throttle_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="throttle_limit"):
        asjob.as_job(throttle_limit=0)(f.add)


def test_a_throttle_cannot_queue_detached_jobs() -> None:
    # Its queue lives in the starter: detached jobs waiting in it when the starter exits
    # would never start.
    with pytest.raises(ValueError, match="cannot be combined with detach=True"):
        asjob.as_job(throttle_limit=2, detach=True)(f.add)


def test_the_decorator_refuses_what_start_job_refuses_when_it_decorates() -> None:
    with pytest.raises(TypeError, match="as_job needs a callable, not int"):
        asjob.as_job(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="kind must be one of"):
        asjob.as_job(kind=123)(f.add)
    with pytest.raises(TypeError, match="context must be an asjob Context"):
        asjob.as_job(context={"tenant": "t"})(f.add)


def test_unknown_kind(session: Session) -> None:
    with pytest.raises(ValueError, match="unknown kind 'cloud'"):
        asjob.start_job(f.add, 1, 2, kind="cloud")
    assert time.monotonic() > 0


def test_an_async_function_is_run_to_its_end(kind: str) -> None:
    add = asjob.as_job(f.async_add, kind=kind)
    assert add(20, 22).receive(wait=True) == 42  # what awaiting the call gives


def test_an_async_generators_items_come_as_a_generators(kind: str) -> None:
    job = asjob.start_job(f.async_count, 3, kind=kind)
    assert job.receive(wait=True) == [0, 1, 2]
