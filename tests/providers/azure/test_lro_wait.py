"""How a job waits on an ``LROPoller``: progress from each status, and a stop that wakes it,
with polling methods of our own (no HTTP) so that the statuses and pauses are exact."""

from __future__ import annotations

import time
from typing import Any

from asjob.providers.azure import lro
from azure.core.polling import LROPoller, PollingMethod

import asjob
from asjob.session import Session
from asjob.writer import JobWriter

STATUSES = ["Accepted", "Creating", "Configuring", "Succeeded"]


class Steps(PollingMethod[str]):
    """Goes through ``statuses``, one per poll, pausing ``pause`` seconds between polls through
    ``_sleep``, as azure-core's polling methods do (``pausable=False``: without ``_sleep``)."""

    def __init__(self, statuses: list[str], pause: float, pausable: bool = True) -> None:
        self._statuses = statuses
        self._pause = pause
        self._index = 0
        if pausable:
            self._sleep = time.sleep

    def initialize(self, client: Any, initial_response: Any, deserialization_callback: Any) -> None:
        pass

    def run(self) -> None:
        while not self.finished():
            pause = getattr(self, "_sleep", time.sleep)
            pause(self._pause)
            self._index += 1

    def status(self) -> str:
        return self._statuses[self._index]

    def finished(self) -> bool:
        return self._index == len(self._statuses) - 1

    def resource(self) -> str:
        return "the resource"


class BusyPoll(Steps):
    """A poll that takes ``seconds`` (a slow request: no pause in which to see a stop)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(["InProgress", "Succeeded"], 0.0)
        self.seconds = seconds

    def run(self) -> None:
        time.sleep(self.seconds)
        self._index = 1


def poller(method: PollingMethod[str]) -> LROPoller[str]:
    return LROPoller(None, None, None, method)


def wait_until_its_thread_ends(session: Session, job: asjob.Job[Any], seconds: float) -> None:
    threads = session.kind("thread")
    deadline = time.monotonic() + seconds
    while threads.is_live(job.id) and time.monotonic() < deadline:
        time.sleep(0.01)


def statuses_reported(job: asjob.Job[Any]) -> list[str]:
    return [record.status for record in job.progress]


def test_each_status_is_reported_after_the_poll_that_saw_it(session: Session) -> None:
    # Statuses 150 ms apart: a job sampling the status every half second would miss two.
    job = asjob.start_job(poller, Steps(STATUSES, 0.15), kind="thread")

    assert job.receive(wait=True, keep=True) == "the resource"
    assert statuses_reported(job) == ["Accepted", "Creating", "Configuring"]


def test_a_poller_without_pauses_to_hook_is_sampled(session: Session) -> None:
    job = asjob.start_job(poller, Steps(STATUSES[1:], 0.8, pausable=False), kind="thread")

    assert job.receive(wait=True, keep=True) == "the resource"
    assert statuses_reported(job) == ["Creating", "Configuring"]


def test_a_stop_wakes_a_wait_whose_poller_is_busy(session: Session) -> None:
    busy = BusyPoll(seconds=3)
    job = asjob.start_job(poller, busy, kind="thread")
    deadline = time.monotonic() + 10
    while not job.progress and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()

    wait_until_its_thread_ends(session, job, seconds=2)
    assert str(job.state) == "Stopped"
    # The job's own thread has ended, though the poller's request still has seconds to go.
    assert not session.kind("thread").is_live(job.id)
    assert busy.status() == "InProgress"


def test_a_stop_callback_runs_once_whether_registered_before_or_after_the_stop() -> None:
    writer = JobWriter(1, lambda stream, payload: None)
    calls: list[str] = []
    writer.on_stop(lambda: calls.append("before"))

    writer.request_stop()
    writer.request_stop()
    writer.on_stop(lambda: calls.append("after"))

    assert calls == ["before", "after"]


def poller_once_stopped(method: PollingMethod[str]) -> LROPoller[str]:
    """Returns a poller only after its job was asked to stop (a PUT answered late)."""
    asjob.current_job().wait_for_stop(10)
    return poller(method)


def test_a_poller_returned_after_the_stop_leaves_the_record_alone(session: Session) -> None:
    job = asjob.start_job(poller_once_stopped, Steps(STATUSES, 0.01), kind="thread")
    job.stop()
    wait_until_its_thread_ends(session, job, seconds=5)

    assert str(job.state) == "Stopped"
    # Not "AzureLongRunningJob": the wait, which would record it, never began.
    assert session.store.get_job(job.id).job_type_name == "ThreadJob"
    assert job.progress == []


def until_stopped() -> None:
    asjob.current_job().wait_for_stop(10)


def test_nothing_is_recorded_for_a_job_that_is_no_longer_running(session: Session) -> None:
    job = asjob.start_job(until_stopped, kind="thread")
    job.stop()
    writer = JobWriter(job.id, lambda stream, payload: None)
    writer.store = session.store

    assert not lro.record_while_running(writer, job.id, {"resume_data": "{}"})
    assert session.store.get_job(job.id).resume_data is None
    assert str(session.store.get_job(job.id).state) == "Stopped"
