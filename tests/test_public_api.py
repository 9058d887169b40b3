"""Everything public is importable from ``asjob``, listed once, sorted."""

from __future__ import annotations

import asjob


def test_all_is_sorted_and_complete() -> None:
    assert asjob.__all__ == sorted(asjob.__all__)
    for name in asjob.__all__:
        assert hasattr(asjob, name), name
    for verb in (
        "start_job",
        "get_job",
        "receive_job",
        "wait_job",
        "stop_job",
        "remove_job",
        "format_jobs",
        "as_job",
        "current_job",
        "current_context",
    ):
        assert verb in asjob.__all__


def test_every_error_derives_from_one_base() -> None:
    for name in (
        "JobNotFoundError",
        "JobNotFinishedError",
        "JobFailedError",
        "InvalidJobStateError",
        "WorkerLostError",
        "BackendUnavailableError",
        "StartRefusedError",
        "StoreError",
        "UnsafeFileError",
    ):
        assert issubclass(getattr(asjob, name), asjob.AsJobError)
    assert issubclass(asjob.JobNotFoundError, LookupError)
    assert issubclass(asjob.UnsafeFileError, PermissionError)
    assert asjob.JobNotFoundError("gone", 7).job_id == 7
