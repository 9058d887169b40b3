"""Streams inside a job (SPEC section 5) and how they reach the caller."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import pytest

import asjob
from asjob import JobState, ProgressRecord
from asjob.session import Session
from tests import jobfuncs as f

# The jobs here warn on purpose. A thread job shares the caller's warning filters, and this
# suite's filters turn warnings into errors: let the job's own DeprecationWarning through.
pytestmark = pytest.mark.filterwarnings("always::DeprecationWarning")


def test_current_job_outside_a_job_raises() -> None:
    with pytest.raises(LookupError):
        asjob.current_job()


def test_every_stream_is_captured(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    job = asjob.start_job(f.streams, kind=kind)
    asjob.wait_job(job)
    assert job.state is JobState.Completed  # write_error is not terminating
    assert job.progress == [ProgressRecord("Deploying", "half way", 50, job.progress[0].time)]
    assert "verbose text" in [r.message for r in job.verbose]
    assert "an info record" in [r.message for r in job.verbose]
    assert {"debug text", "a debug record"} <= {r.message for r in job.debug}
    assert {"error text", "an error record"} <= {r.message for r in job.error}
    warning_texts = {r.message for r in job.warning}
    assert {"warning text", "a python warning"} <= warning_texts
    info = [(r.source, r.message) for r in job.information]
    assert ("job", "information text") in info
    assert ("stdout", "printed text") in info and ("stderr", "to stderr") in info
    assert job.has_more_data


def test_receive_drains_streams_and_replays_warnings_and_logs(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    job = asjob.start_job(f.streams, kind=kind)
    asjob.wait_job(job)
    caplog.clear()
    with pytest.warns(Warning) as caught:
        assert job.receive() == "streams done"
    shown = [(type(w.message), str(w.message)) for w in caught]
    assert (DeprecationWarning, "a python warning") in shown  # its warnings.warn
    assert (UserWarning, "warning text") in shown  # its write_warning
    assert f"<job {job.id}>" in [w.filename for w in caught]
    records = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    if kind == "process":
        # Records from another process reach the caller's logging on receive, once.
        assert ("tests.jobfuncs", "ERROR", "an error record") in records
        assert ("tests.jobfuncs", "INFO", "an info record") in records
    else:
        # A thread job's records went through the caller's logging as they happened.
        assert records == []
    assert job.warning == [] and job.information == [] and job.progress == []
    assert job.has_more_data is False
    caplog.clear()
    assert job.receive() is None
    assert caplog.records == []


def test_receive_shows_what_the_job_printed_and_its_errors_once(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As Receive-Job shows information and errors: drained unseen, they were lost."""
    job = asjob.start_job(f.streams, kind=kind)
    asjob.wait_job(job)
    assert capsys.readouterr() == ("", "")  # captured as the job ran, not shown then

    with pytest.warns(Warning):
        job.receive()
    out, err = capsys.readouterr()
    assert out.splitlines() == ["information text", "printed text"]
    assert [line for line in err.splitlines() if "record" not in line] == [
        "error text",
        "to stderr",
    ]
    assert "an error record" not in err  # a logging record reaches logging, not this
    job.receive()
    assert capsys.readouterr() == ("", "")


def test_keep_replays_nothing(
    kind: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    job = asjob.start_job(f.streams, kind=kind)
    asjob.wait_job(job)
    caplog.clear()
    assert job.receive(keep=True) == "streams done"
    assert [r for r in caplog.records if r.name == "tests.jobfuncs"] == []
    assert capsys.readouterr() == ("", "")
    assert job.warning


def test_thread_job_logs_reach_the_caller_as_they_happen(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    job = asjob.start_job(f.chatty, "t", 2, kind="thread")
    asjob.wait_job(job)
    assert [r.getMessage() for r in caplog.records if r.name == "tests.jobfuncs"] == [
        "t log 0",
        "t log 1",
    ]


def test_concurrent_thread_jobs_keep_their_streams_apart(session: Session) -> None:
    jobs = [asjob.start_job(f.chatty, f"job{i}", 20, kind="thread") for i in range(4)]
    asjob.wait_job(jobs)
    for i, job in enumerate(jobs):
        lines = [r.message for r in job.information]
        assert lines == [f"job{i} line {n}" for n in range(20)]
        assert {r.message.split()[0] for r in job.warning} == {f"job{i}"}
    assert threading.active_count() >= 1


def test_cooperative_stop_flag_in_a_thread_job(session: Session) -> None:
    job = asjob.start_job(f.cooperative, 10, kind="thread")
    job.stop()
    assert job.state is JobState.Stopped
    assert job.receive() is None


def test_progress_percent_is_checked(session: Session) -> None:
    job = asjob.start_job(f.bad_progress, kind="thread")
    with pytest.raises(ValueError, match="percent"):
        job.receive(wait=True)


def test_a_flood_of_printed_lines_arrives_whole_and_in_order(kind: str) -> None:
    # Written in batches while they come fast (asjob.worker.batching); the end flushes all.
    job = asjob.start_job(f.print_lines, 3000, kind=kind)
    assert asjob.wait_job(job, timeout=60) == [job]
    assert [record.message for record in job.information] == [f"line {i}" for i in range(3000)]


def test_a_warning_made_an_error_leaves_the_jobs_data_unreceived(kind: str) -> None:
    jobs = [asjob.start_job(f.add, 1, 2, kind=kind), asjob.start_job(f.streams, kind=kind)]
    asjob.wait_job(jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Warning):
            asjob.receive_job(jobs)
    with pytest.warns(Warning):  # as the filters have it again: received, nothing lost
        assert asjob.receive_job(jobs) == [3, "streams done"]


def test_a_warning_made_an_error_keeps_a_failed_job_for_an_auto_removing_receive(
    kind: str,
) -> None:
    job = asjob.start_job(f.warn_then_fail, kind=kind)
    asjob.wait_job([job])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning):
            asjob.receive_job(job, wait=True, auto_remove_job=True)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="after warning"):
        asjob.receive_job(job, wait=True, auto_remove_job=True)  # its failure reaches you


def test_what_a_job_logs_and_prints_is_stored_without_credentials(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An SDK's network trace (azure-core's ``logging_enable``) logs each request's bearer
    token and body: the store, which other processes read, must hold neither."""
    caplog.set_level(logging.DEBUG)
    token, password = "eyJ0eXAi.s3cretT0ken", "Adm1n-Passw0rd"
    job = asjob.start_job(f.trace_a_request, token, password, kind=kind)
    asjob.wait_job(job)
    shown = [r.message for r in job.debug + job.information]
    assert "Request headers: {'Authorization': 'REDACTED', 'Accept': 'json'}" in shown
    assert 'Request body: {"adminPassword": "REDACTED", "location": "westus"}' in shown
    assert "Authorization: Bearer REDACTED" in shown
    store = asjob.session.current_session().store.path
    assert store is not None
    saved = b"".join(Path(f"{store}{suffix}").read_bytes() for suffix in ("", "-wal"))
    assert token.encode() not in saved and password.encode() not in saved
