"""asjob.cli.output: job snapshots agree with the Job handles, and how values print."""

from __future__ import annotations

import datetime
import json
import subprocess

import pytest

import asjob
from asjob.cli.output import (
    JobView,
    describe_failure,
    format_views,
    render_json,
    render_value,
    render_views_json,
    view_jobs,
    view_records,
    view_summaries,
)
from asjob.errors import JobFailedError, WorkerLostError
from asjob.session import Session
from asjob.states import JobState, transition
from asjob.store.base import NewJob
from tests import jobfuncs_cli

KEYS = {
    "id",
    "name",
    "state",
    "has_more_data",
    "location",
    "command",
    "job_type_name",
    "begin_time",
    "end_time",
    "reason",
}


def _mixed_jobs() -> list[asjob.Job[object]]:
    done = asjob.start_job(jobfuncs_cli.add, 1, 2, kind="thread", name="adder")
    failed = asjob.start_job(jobfuncs_cli.fail, "nope", kind="thread")
    gen = asjob.start_job(jobfuncs_cli.count, 3, kind="thread")
    parent = asjob.as_job(jobfuncs_cli.add, kind="thread").map([])
    running = asjob.start_job(jobfuncs_cli.sleep_then, 30, kind="thread")
    jobs = [done, failed, gen, parent, running]
    asjob.wait_job(jobs[:4], timeout=10)
    asjob.receive_job(done)
    return jobs


def test_views_agree_with_the_job_handles(session: Session) -> None:
    jobs = _mixed_jobs()
    try:
        views = view_jobs(jobs)
        assert format_views(views) == asjob.format_jobs(jobs)
        for job, view in zip(jobs, views, strict=True):
            data = view.as_json()
            assert set(data) == KEYS
            assert data["id"] == job.id
            assert data["name"] == job.name
            assert data["state"] == str(job.state)
            assert data["has_more_data"] == job.has_more_data
            assert data["command"] == job.command
            assert data["job_type_name"] == job.job_type_name
            assert data["location"] == job.location
            begin, end = job.begin_time, job.end_time
            assert data["begin_time"] == (begin.isoformat() if begin else None)
            assert data["end_time"] == (end.isoformat() if end else None)
        assert views[1].reason == "ValueError: nope"
        assert [v.reason for v in views if v.id != jobs[1].id] == [None] * 4
        assert views[4].end_time is None and views[4].state is JobState.Running
        assert isinstance(session.store, asjob.SQLiteStore)
        assert view_summaries(session.store.list_summaries()) == views  # the fast listing
    finally:
        asjob.stop_job(jobs)


def test_many_jobs_are_read_in_one_query_with_the_same_result(session: Session) -> None:
    jobs = [asjob.start_job(jobfuncs_cli.add, i, 1, kind="thread") for i in range(25)]
    asjob.wait_job(jobs, timeout=10)
    assert view_jobs(jobs) == view_jobs(jobs[:20]) + view_jobs(jobs[20:])
    assert format_views(view_jobs(jobs)) == asjob.format_jobs(jobs)


def test_a_job_whose_process_died_unheard_is_shown_failed(session: Session) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    record = session.store.create_job(
        NewJob(
            name="",
            command="lost()",
            job_type_name="BackgroundJob",
            kind="process",
            session_id="another-session",
            host_pid=dead.pid,
        )
    )
    transition(session.store, record.id, JobState.Running, host_pid=dead.pid)
    [view] = view_records([session.store.get_job(record.id)])
    assert view.state is JobState.Failed
    assert view.reason is not None and view.reason.startswith("WorkerLostError: ")


def test_removed_jobs_are_left_out(session: Session) -> None:
    job = asjob.start_job(jobfuncs_cli.add, 1, 2, kind="thread")
    job.wait(timeout=10)
    job.remove()
    assert view_jobs([job]) == []


def test_views_json_is_a_list_of_objects() -> None:
    view = JobView(
        1, "Job1", JobState.Completed, False, "localhost", "f()", "BackgroundJob", 0.0, 1.5, None
    )
    assert json.loads(render_views_json([view, view])) == [view.as_json()] * 2
    assert view.as_json()["end_time"] == "1970-01-01T00:00:01.500000+00:00"
    assert render_views_json([]) == "[]"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain text", "plain text"),
        (2, "2"),
        (None, "null"),
        ([1, "a"], '[1, "a"]'),
        ({"k": True}, '{"k": true}'),
        ((1, 2), "[1, 2]"),
        (datetime.date(2024, 1, 2), "datetime.date(2024, 1, 2)"),
        ({1: {2}}, "{1: {2}}"),
        ({"k": float("nan")}, "{'k': nan}"),  # not JSON's look-alike {"k": NaN}
    ],
)
def test_values_print_as_strings_json_or_repr(value: object, text: str) -> None:
    assert render_value(value) == text


def test_json_rendering_keeps_what_json_cannot_hold_as_repr() -> None:
    assert json.loads(render_json([1, datetime.date(2024, 1, 2)])) == [
        1,
        "datetime.date(2024, 1, 2)",
    ]


@pytest.mark.parametrize(
    ("value", "data"),
    [
        (float("nan"), "nan"),
        ([float("inf"), -float("inf")], ["inf", "-inf"]),
        ({(1, 2): 1, 3: 4, None: 5}, {"(1, 2)": 1, "3": 4, "null": 5}),
        ({float("nan"): "key"}, {"nan": "key"}),
        ({1, 2}, "{1, 2}"),
    ],
)
def test_json_rendering_is_always_valid_json(value: object, data: object) -> None:
    strict = json.loads(render_json(value), parse_constant=_not_json)
    assert strict == data


def test_json_rendering_of_what_defeats_json_falls_back_to_repr() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    assert json.loads(render_json(cycle)) == "[[...]]"
    assert render_json(10**5000) == "1" + "0" * 5000  # past Python's 4,300 digits
    assert render_value(10**5000) == "1" + "0" * 5000


class _Unshowable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_a_value_whose_repr_fails_is_shown_by_type() -> None:
    assert render_value(_Unshowable()).startswith("<tests.test_cli_output._Unshowable object at")
    assert json.loads(render_json([_Unshowable()]))[0].startswith("<tests.test_cli_output.")


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def test_failures_are_described_by_type_and_message() -> None:
    assert describe_failure(ValueError("bad")) == "ValueError: bad"
    assert describe_failure(WorkerLostError("job 3: killed", 3)) == "WorkerLostError: job 3: killed"
    unknown = JobFailedError(
        "job 3 failed with m.Gone: went (its type cannot be imported)",
        3,
        type_name="m.Gone",
        original_message="went",
    )
    assert describe_failure(unknown) == "Gone: went"
