"""What only the thread kind does, or refuses to do."""

from __future__ import annotations

import pytest

import asjob
from asjob.session import Session
from tests import jobfuncs as f


def test_a_thread_job_cannot_be_detached(session: Session) -> None:
    with pytest.raises(ValueError, match="thread job cannot be detached"):
        asjob.start_job(f.noop, kind="thread", detach=True)
    assert asjob.get_job() == []
