"""A real Dask cluster for the ``dask`` kind's tests, and the functions its workers run.

The cluster is the ``dask scheduler`` and ``dask worker`` command-line programs, started as
processes of the test on 127.0.0.1 (dashboards too, on ports the system picks). Workers import
this module (and ``tests.jobfuncs``) by name: they run from the repository with it on their path.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from asjob import Context, current_context, current_job
from asjob.kinds.dask.loopback import (
    LoopbackCluster,
    start_loopback_cluster,
)

ROOT = Path(__file__).resolve().parent.parent


def start_cluster(directory: Path, workers: int = 2, nthreads: int = 2) -> LoopbackCluster:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return start_loopback_cluster(directory, workers, nthreads, env=env, cwd=ROOT)


@contextlib.contextmanager
def client(address: str) -> Iterator[Any]:
    from distributed import Client

    with Client(address, set_as_default=False, timeout=30) as dask_client:
        yield dask_client


def wait_for_workers(address: str, count: int, timeout: float = 60) -> list[str]:
    with client(address) as dask_client:
        dask_client.wait_for_workers(count, timeout=timeout)
        return sorted(dask_client.scheduler_info(n_workers=-1)["workers"])


def worker_pids(address: str) -> dict[str, int]:
    with client(address) as dask_client:
        return dict(dask_client.run(os.getpid))


# -- what the jobs run ---------------------------------------------------------------------------


class SecretContext(Context):
    """A stand-in cloud context carrying a secret (say, an access token) in memory only."""

    provider = "test"

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def to_data(self) -> dict[str, Any]:
        return {}  # references only: never the secret

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> SecretContext:
        return cls("")


def context_secret() -> str:
    context = current_context()
    assert isinstance(context, SecretContext)
    return context.secret


def environment_has(text: str) -> bool:
    return any(text in value for value in os.environ.values())


def note_start_and_sleep(path: str, seconds: float) -> int:
    """Append this process's pid to ``path`` (one line per start), then sleep."""
    with open(path, "a") as out:
        out.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return os.getpid()


def record_resume_data_and_sleep(resume_data: str, seconds: float) -> None:
    """Record ``resume_data`` as a provider does (an operation's continuation token), then sleep."""
    job = current_job()
    assert job.store is not None
    job.store.update(job.job_id, resume_data=resume_data)
    time.sleep(seconds)


def zeros(size: int) -> bytes:
    """``size`` zero bytes: a result as large as a test needs."""
    return bytes(size)
