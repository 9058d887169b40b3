"""The verbs' rules (SPEC section 4), once per local kind."""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest

import asjob
from asjob import JobState
from asjob import context as asjob_context
from asjob.session import Session
from tests import jobfuncs as f


def test_start_returns_a_running_job_at_once(kind: str) -> None:
    job = asjob.start_job(f.sleep_then, 60, kind=kind)
    # Had the start waited for the work, the job would be Completed by now.
    assert job.state is JobState.Running
    assert job.begin_time is not None and job.begin_time.tzinfo is not None
    assert job.end_time is None
    job.stop()


def test_receive_returns_the_return_value_once(kind: str) -> None:
    job = asjob.start_job(f.add, 2, 3, kind=kind)
    assert asjob.receive_job(job, wait=True) == 5
    assert job.state is JobState.Completed
    assert asjob.receive_job(job) is None
    assert job.has_more_data is False


def test_receive_with_keep_leaves_the_value_receivable(kind: str) -> None:
    job = asjob.start_job(f.add, 1, 1, kind=kind)
    assert job.receive(wait=True, keep=True) == 2
    assert job.has_more_data is True
    assert job.receive() == 2
    assert job.receive() is None


def test_receive_on_a_running_function_job_returns_none(kind: str) -> None:
    job = asjob.start_job(f.sleep_then, 0.5, "late", kind=kind)
    assert job.receive() is None
    assert job.receive(wait=True) == "late"


def test_generator_job_receives_contiguous_slices(kind: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = asjob.start_job(f.wait_for_file_then_yield, str(gate), [1, 2, 3], [4, 5], kind=kind)
    deadline = time.monotonic() + 10
    first: list[int] = []
    while len(first) < 3 and time.monotonic() < deadline:
        first += job.receive()
        time.sleep(0.01)
    assert first == [1, 2, 3]
    assert job.receive() == []
    gate.touch()
    assert job.receive(wait=True) == [4, 5]
    assert job.receive() == []


def test_failed_job_raises_the_original_exception_every_time(kind: str) -> None:
    job = asjob.start_job(f.fail, "bad input", kind=kind)
    for _ in range(2):
        with pytest.raises(f.CustomError) as caught:
            job.receive(wait=True)
        assert str(caught.value) == "bad input"
        assert caught.value.code == 42
        assert isinstance(caught.value.__cause__, asjob.RemoteTraceback)
        assert "raise CustomError" in str(caught.value.__cause__)
    assert job.state is JobState.Failed
    assert isinstance(job.reason, f.CustomError)


def test_failure_keeps_the_output_produced_before_it(kind: str) -> None:
    job = asjob.start_job(f.count_then_fail, 3, kind=kind)
    with pytest.raises(ValueError, match="failed after 3") as caught:
        job.receive(wait=True)
    assert caught.value.partial_output == [0, 1, 2]  # type: ignore[attr-defined]


def test_a_job_that_exits_with_status_zero_completes_with_what_it_produced(kind: str) -> None:
    function_job = asjob.start_job(f.exit_with, 0, kind=kind)
    generator_job = asjob.start_job(f.count_then_exit, 3, None, kind=kind)

    assert function_job.receive(wait=True) is None
    assert generator_job.receive(wait=True) == [0, 1, 2]
    assert function_job.state is generator_job.state is JobState.Completed


def _raised_by_receive(job: asjob.Job[Any]) -> BaseException:
    try:
        job.receive(wait=True)
    except BaseException as exc:  # what a job raised must not reach here as itself
        return exc
    raise AssertionError(f"receiving job {job.id} raised nothing")


@pytest.mark.parametrize(
    ("function", "args", "original", "message"),
    [
        (f.exit_with, (3,), SystemExit, "exited with status 3"),
        (f.exit_with, ("no disk left",), SystemExit, "exited: no disk left"),
        (f.count_then_exit, (2, 1), SystemExit, "exited with status 1"),
        (f.interrupt, (), KeyboardInterrupt, "was ended by builtins.KeyboardInterrupt"),
    ],
)
def test_an_exit_or_interrupt_in_a_job_fails_it_without_ending_the_caller(
    kind: str, function: Any, args: tuple[Any, ...], original: type[BaseException], message: str
) -> None:
    """Raised in the caller as itself, a job's SystemExit would end the caller's script (a CI
    step: quietly, with the job's status), and its KeyboardInterrupt would look like Ctrl-C."""
    job = asjob.start_job(function, *args, kind=kind)

    raised = _raised_by_receive(job)
    assert isinstance(raised, asjob.JobFailedError)
    assert str(raised) == f"job {job.id} {message}"
    assert type(raised.__cause__) is original
    assert isinstance(raised.__cause__.__cause__, asjob.RemoteTraceback)
    assert raised.partial_output == ([0, 1] if function is f.count_then_exit else [])  # type: ignore[attr-defined]
    assert type(job.reason) is original and job.state is JobState.Failed


def test_exception_of_a_type_defined_in_a_function_becomes_job_failed_error(kind: str) -> None:
    job = asjob.start_job(f.fail_with_local_class, kind=kind)
    asjob.wait_job(job)
    if kind == "thread":
        with pytest.raises(asjob.JobFailedError) as caught:
            job.receive()
    else:
        with pytest.raises(asjob.JobFailedError) as caught:
            job.receive()
    assert "LocalError" in caught.value.type_name
    assert caught.value.original_message == "defined in a function"
    assert "raise LocalError" in caught.value.traceback_text


def test_unpicklable_exception_is_rebuilt_from_its_type_and_args(kind: str) -> None:
    job = asjob.start_job(f.raise_unpicklable, kind=kind)
    with pytest.raises(f.UnpicklableError, match="carries a lock"):
        job.receive(wait=True)


def test_wait_all_returns_the_same_jobs_in_input_order(kind: str) -> None:
    slow = asjob.start_job(f.sleep_then, 0.3, kind=kind)
    fast = asjob.start_job(f.noop, kind=kind)
    done = asjob.wait_job([slow, fast])
    assert done == [slow, fast]
    assert done[0] is slow
    assert all(j.state is JobState.Completed for j in done)


def test_wait_any_returns_the_first_finished_job_in_input_order(kind: str) -> None:
    slow = asjob.start_job(f.sleep_then, 5, kind=kind)
    fast = asjob.start_job(f.noop, kind=kind)
    assert asjob.wait_job([slow, fast], any=True, timeout=4) == [fast]
    asjob.stop_job(slow)


def test_wait_timeout_returns_nothing_and_the_jobs_keep_running(kind: str) -> None:
    job = asjob.start_job(f.sleep_then, 5, kind=kind)
    started = time.monotonic()
    assert asjob.wait_job([job], timeout=0.2) == []
    assert 0.15 <= time.monotonic() - started < 3
    assert job.state is JobState.Running
    job.stop()


def test_wait_with_zero_timeout_polls(kind: str) -> None:
    running = asjob.start_job(f.sleep_then, 5, kind=kind)
    assert asjob.wait_job(running, timeout=0) == []
    done = asjob.start_job(f.noop, kind=kind)
    asjob.wait_job(done)
    assert asjob.wait_job(done, timeout=0) == [done]
    running.stop()


@pytest.mark.parametrize("timeout", [-1, float("nan")])
def test_a_timeout_that_is_no_number_of_seconds_is_refused(session: object, timeout: float) -> None:
    # NaN compares False with everything: unchecked, it would wait without limit.
    with pytest.raises(ValueError, match="timeout must be zero or more seconds"):
        asjob.wait_job([], timeout=timeout)


def test_a_timeout_that_is_not_a_number_is_refused_by_name(session: object) -> None:
    with pytest.raises(TypeError, match="timeout must be a number of seconds or None, not str"):
        asjob.wait_job([], timeout="5")  # type: ignore[arg-type]


def test_waiting_for_no_jobs_returns_at_once(session: object) -> None:
    waited: list[list[asjob.Job[Any]]] = []

    def wait() -> None:
        waited.append(asjob.wait_job([], any=True))
        waited.append(asjob.wait_job([]))

    waiter = threading.Thread(target=wait, daemon=True)  # daemon: a hang must not outlive us
    waiter.start()
    waiter.join(5)
    assert waited == [[], []]


def test_stop_is_synchronous_and_not_a_failure(kind: str) -> None:
    job = asjob.start_job(f.sleep_then, 30, kind=kind)
    started = time.monotonic()
    asjob.stop_job(job)
    assert time.monotonic() - started < 2
    assert job.state is JobState.Stopped
    assert job.reason is None
    assert job.end_time is not None
    assert job.receive() is None


def test_stopping_a_finished_job_is_a_silent_no_op(kind: str) -> None:
    job = asjob.start_job(f.add, 1, 2, kind=kind)
    asjob.wait_job(job)
    asjob.stop_job(job)
    assert job.state is JobState.Completed
    assert job.receive() == 3


def test_stopped_generator_job_returns_what_it_produced(kind: str) -> None:
    job = asjob.start_job(f.count, 1000, 0.01, kind=kind)
    deadline = time.monotonic() + 10
    while not job.output and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()
    produced = job.receive()
    assert produced and produced == list(range(len(produced)))


def test_remove_a_finished_job(kind: str) -> None:
    job = asjob.start_job(f.noop, kind=kind)
    asjob.wait_job(job)
    asjob.remove_job(job)
    with pytest.raises(asjob.JobNotFoundError):
        asjob.get_job(id=job.id)


def test_remove_a_running_job_needs_force(kind: str) -> None:
    job = asjob.start_job(f.sleep_then, 30, kind=kind)
    with pytest.raises(asjob.JobNotFinishedError) as caught:
        asjob.remove_job(job)
    assert str(job.id) in str(caught.value)
    assert job.state is JobState.Running
    asjob.remove_job(job, force=True)
    with pytest.raises(asjob.JobNotFoundError):
        asjob.get_job(id=job.id)


def test_auto_remove_job(kind: str) -> None:
    job = asjob.start_job(f.add, 2, 2, kind=kind)
    assert asjob.receive_job(job, wait=True, auto_remove_job=True) == 4
    with pytest.raises(asjob.JobNotFoundError):
        asjob.get_job(id=job.id)
    with pytest.raises(ValueError, match="wait=True"):
        asjob.receive_job(job, auto_remove_job=True)


def test_auto_remove_job_removes_a_failed_job_whose_error_it_raised(kind: str) -> None:
    failed = asjob.start_job(f.fail, "gone", kind=kind)
    other = asjob.start_job(f.add, 1, 1, kind=kind)
    with pytest.raises(f.CustomError, match="gone"):
        asjob.receive_job([other, failed], wait=True, auto_remove_job=True)
    with pytest.raises(asjob.JobNotFoundError):
        asjob.get_job(id=failed.id)
    # The other job was not received, so it stays, with its result.
    assert asjob.receive_job(other) == 2


def test_receive_several_jobs_gives_results_in_order(kind: str) -> None:
    jobs = [asjob.start_job(f.identity, i, kind=kind) for i in range(3)]
    assert asjob.receive_job(jobs, wait=True) == [0, 1, 2]


def test_verbs_accept_ids(kind: str) -> None:
    job = asjob.start_job(f.add, 3, 4, kind=kind)
    assert asjob.wait_job(job.id) == [job]
    assert asjob.receive_job(job.id) == 7
    asjob.remove_job([job.id])


def test_working_directory(kind: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    before = asjob.get_job()
    with pytest.raises(FileNotFoundError, match="missing"):
        asjob.start_job(f.cwd, kind=kind, working_directory=missing)
    assert asjob.get_job() == before
    if kind == "thread":
        with pytest.raises(ValueError, match="working directory"):
            asjob.start_job(f.cwd, kind=kind, working_directory=tmp_path)
    else:
        job = asjob.start_job(f.cwd, kind=kind, working_directory=tmp_path)
        assert job.receive(wait=True) == str(tmp_path)


@dataclass(frozen=True)
class TenantContext(asjob.Context):
    """The least a cloud context can be: which tenant."""

    provider: ClassVar[str] = "test"
    tenant: str

    def to_data(self) -> dict[str, Any]:
        return {"tenant": self.tenant}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TenantContext:
        return cls(data["tenant"])


@pytest.mark.parametrize("fn", [42, None, "f.add"])
def test_start_refuses_what_cannot_be_called(session: Session, fn: Any) -> None:
    with pytest.raises(TypeError, match=f"callable, not {type(fn).__name__}: {fn!r}"):
        asjob.start_job(fn)
    assert session.store.list_jobs() == []


def test_start_refuses_a_kind_that_is_neither_a_name_nor_a_kind(session: Session) -> None:
    with pytest.raises(TypeError, match=r"'process', 'thread', 'dask' .*not int: 123"):
        asjob.start_job(f.noop, kind=123)
    with pytest.raises(ValueError, match="unknown kind 'proces'"):
        asjob.start_job(f.noop, kind="proces")
    assert session.store.list_jobs() == []


def test_start_refuses_a_context_that_is_not_a_context(session: Session) -> None:
    with pytest.raises(TypeError, match=r"an asjob Context .*not str"):
        asjob.start_job(f.noop, context="hello")
    assert session.store.list_jobs() == []


def test_set_context_refuses_what_is_not_a_context() -> None:
    with pytest.raises(TypeError, match=r"an asjob Context .*not str"):
        asjob.set_context("hello")


def test_init_runs_in_the_worker_before_the_function(kind: str) -> None:
    job = asjob.start_job(f.read_context, kind=kind, init=f.noop, context=TenantContext("t1"))
    assert job.receive(wait=True) == TenantContext("t1")


def test_job_identity(kind: str) -> None:
    job = asjob.start_job(f.add, 1, 2, kind=kind)
    other = asjob.start_job(f.add, 3, 4, kind=kind, name="")
    named = asjob.start_job(f.add, 5, 6, kind=kind, name="adder")
    assert other.id > job.id and named.id > other.id
    assert job.name == f"Job{job.id}" and other.name == f"Job{other.id}"
    assert named.name == "adder"
    assert isinstance(job.instance_id, uuid.UUID) and job.instance_id != other.instance_id
    assert job.command == "add(1, 2)"
    assert job.location == "localhost"
    expected = {"process": "BackgroundJob", "thread": "ThreadJob"}[kind]
    assert job.job_type_name == expected
    assert str(job.state) in ("Running", "Completed")
    asjob.wait_job([job, other, named])


def test_the_command_shows_scalars_and_hides_structures(kind: str, store_path: Path) -> None:
    secret = "hunter2-do-not-store"
    job = asjob.start_job(
        f.consume, "vm1", 3, {"adminPassword": secret}, kind=kind, profile=f.Greeter(secret)
    )
    asjob.wait_job(job)
    assert job.command == "consume('vm1', 3, <dict>, profile=<Greeter>)"
    for path in store_path.parent.iterdir():
        assert secret.encode() not in path.read_bytes(), path


def test_the_command_hides_credentials_wherever_they_are(kind: str, store_path: Path) -> None:
    secret = "hunter2-do-not-store"
    jobs = [
        asjob.start_job(functools.partial(f.consume, "vm1", params={"pw": secret}), kind=kind),
        asjob.start_job(f.KeyedClient(secret), "rg", kind=kind),
        asjob.start_job(
            f.consume,
            f"Bearer {secret}",
            f"https://a.example/b?sv=1&sig={secret}",
            client_secret=secret,
            kind=kind,
        ),
    ]
    jobs += [
        asjob.start_job(f.login, "alice", secret, "eus", kind=kind),
        asjob.start_job(
            f.consume, f"sig={secret}", f"https://bob:{secret}@example.invalid/", kind=kind
        ),
    ]
    asjob.wait_job(jobs)
    assert [job.command for job in jobs] == [
        "consume('vm1', params=<dict>)",
        "KeyedClient('rg')",
        "consume('Bearer REDACTED', 'https://a.example/b?sv=1&sig=REDACTED', "
        "client_secret=<redacted>)",
        "login('alice', <redacted>, 'eus')",  # a region code is no credential
        "consume('sig=REDACTED', 'https://bob:REDACTED@example.invalid/')",
    ]
    for path in store_path.parent.iterdir():
        assert secret.encode() not in path.read_bytes(), path


def test_ids_are_never_reused(kind: str) -> None:
    job = asjob.start_job(f.noop, kind=kind)
    asjob.wait_job(job)
    asjob.remove_job(job)
    assert asjob.start_job(f.noop, kind=kind).id > job.id


def test_get_job_filters(kind: str) -> None:
    a = asjob.start_job(f.add, 1, 2, kind=kind, name="Deploy-Web")
    b = asjob.start_job(f.sleep_then, 5, kind=kind, name="deploy-db")
    c = asjob.start_job(f.noop, kind=kind, name="cleanup")
    asjob.wait_job([a, c])
    assert asjob.get_job() == [a, b, c]
    assert asjob.get_job(name="DEPLOY-*") == [a, b]
    assert asjob.get_job(name="deploy-?b") == [b]
    assert asjob.get_job(name="cleanup") == [c]
    assert asjob.get_job(name="nothing*") == []
    with pytest.raises(asjob.JobNotFoundError):
        asjob.get_job(name="nothing")
    with pytest.raises(asjob.JobNotFoundError):
        asjob.get_job(id=999_999)
    with pytest.raises(asjob.JobNotFoundError):
        asjob.get_job(instance_id=uuid.uuid4())
    assert asjob.get_job(instance_id=b.instance_id) == [b]
    assert asjob.get_job(state=JobState.Running) == [b]
    assert asjob.get_job(state="Completed") == [a, c]
    assert asjob.get_job(command="sleep_then*") == [b]
    assert asjob.get_job(id=[c.id, a.id]) == [a, c]
    assert asjob.get_job(id=[a.id, a.id]) == [a]  # each job once
    assert asjob.get_job(instance_id=[b.instance_id, str(b.instance_id)]) == [b]
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert asjob.get_job(before=future) == [a, c]
    assert asjob.get_job(after=future) == []
    assert asjob.get_job(newest=1) == [c] if c.end_time > a.end_time else [a]  # type: ignore[operator]
    assert asjob.get_job(newest=0) == []
    assert asjob.get_job(state="completed") == [a, c]  # any case, as PowerShell reads it
    with pytest.raises(ValueError, match=r"'Done' is not a job state .*Completed"):
        asjob.get_job(state="Done")
    b.stop()


def test_get_job_has_more_data(kind: str) -> None:
    a = asjob.start_job(f.add, 1, 2, kind=kind)
    b = asjob.start_job(f.add, 3, 4, kind=kind)
    asjob.wait_job([a, b])
    a.receive()
    assert asjob.get_job(has_more_data=True) == [b]
    assert asjob.get_job(has_more_data=False) == [a]


def test_a_job_is_a_typed_handle(kind: str) -> None:
    job: asjob.Job[int] = asjob.start_job(f.add, 1, 2, kind=kind)
    result: int = job.receive(wait=True)
    assert result == 3


def test_filtering_reads_the_listed_records_not_each_job_again(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = [asjob.start_job(f.add, i, 1, kind="thread") for i in range(30)]
    asjob.wait_job(jobs)
    newest_two = sorted(jobs, key=lambda j: (j.record().end_time or 0.0, j.id))[-2:]
    reads: list[int] = []
    get_job = session.store.get_job
    monkeypatch.setattr(session.store, "get_job", lambda i: reads.append(i) or get_job(i))
    assert asjob.get_job(state="completed") == jobs
    assert asjob.get_job(newest=2) == sorted(newest_two, key=lambda j: j.id)
    assert reads == []  # one listing served the filters


def test_removing_jobs_while_thread_jobs_produce_output_is_safe(session: Session) -> None:
    producers = [asjob.start_job(f.count, 100_000, 0.0001, kind="thread") for _ in range(4)]
    for i in range(300):
        job = asjob.start_job(f.identity, i, kind="thread")
        assert job.receive(wait=True) == i
        job.remove()  # looked through the session's live outputs as producers added to them
        assert not session.knows_finished(job.id)  # nothing kept of a removed job
    asjob.stop_job(producers)


def test_an_autosaved_context_that_is_no_regular_file_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fifo = tmp_path / "context.json"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer, and every start with it
    monkeypatch.setenv("ASJOB_CONTEXT_FILE", str(fifo))
    monkeypatch.setattr(asjob_context, "_current", asjob_context._UNSET)
    monkeypatch.setattr(asjob_context, "_autosave", None)
    assert asjob.get_context() is None
    assert "it is a named pipe, not a regular file" in caplog.text


def test_an_interrupted_start_leaves_the_job_stopped_not_failed(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asjob.kinds.process import ProcessKind

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the job was being handed to its worker

    monkeypatch.setattr(ProcessKind, "launch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        asjob.start_job(f.add, 1, 2)
    [job] = asjob.get_job()
    assert job.state is JobState.Stopped and job.reason is None


def test_a_removed_job_can_still_be_shown(kind: str) -> None:
    job = asjob.start_job(f.add, 1, 2, kind=kind)
    assert job.receive(wait=True) == 3
    asjob.remove_job(job)
    assert repr(job) == f"<Job {job.id} 'Job{job.id}' Completed>"  # as it was last seen
    running = asjob.start_job(f.sleep_then, 60, kind=kind)
    asjob.remove_job(running, force=True)
    assert repr(running).startswith(f"<Job {running.id} ")  # shown, not raising


def test_a_fan_outs_command_hides_items_that_go_to_a_credential_parameter(kind: str) -> None:
    rotate = asjob.as_job(f.rotate_password, kind=kind)
    parent = rotate.map(["S3CRET-1", "S3CRET-2"])
    asjob.wait_job([parent])
    assert parent.command == "rotate_password.map([<redacted>, <redacted>])"


def test_a_start_from_a_deleted_working_directory_says_so(
    session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(FileNotFoundError, match="working directory no longer exists"):
        asjob.start_job(f.add, 1, 2)
    assert asjob.start_job(f.add, 1, 2, working_directory=tmp_path).receive(wait=True) == 3
