"""A real Dask cluster for the ``dask`` kind's tests, and the functions its workers run.

The cluster is the ``dask scheduler`` and ``dask worker`` command-line programs, started as
processes of the test on 127.0.0.1 (dashboards too, on ports the system picks). Workers import
this module (and ``tests.jobfuncs``) by name: they run from the repository with it on their path.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asjob import current_context, current_job

ROOT = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).with_name("dask"))


@dataclass
class LocalCluster:
    """A scheduler and workers running as processes of the test."""

    address: str
    directory: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.directory.glob("*.log"))


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        # A session of its own: the teardown can end the process and whatever it started.
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def start_cluster(directory: Path, workers: int = 2, nthreads: int = 2) -> LocalCluster:
    directory.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    scheduler_file = directory / "scheduler.json"
    local = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    cluster = LocalCluster(address="", directory=directory)
    cluster.processes.append(
        _spawn(
            [DASK, "scheduler", "--port", "0", "--scheduler-file", str(scheduler_file), *local],
            directory / "scheduler.log",
            env,
        )
    )
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if time.monotonic() > deadline or cluster.processes[0].poll() is not None:
                raise RuntimeError(f"the Dask scheduler did not start:\n{cluster.logs()}")
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one go, but give the writer its close
        cluster.address = json.loads(scheduler_file.read_text())["address"]
        for index in range(workers):
            cluster.processes.append(
                _spawn(
                    [
                        DASK,
                        "worker",
                        cluster.address,
                        "--nthreads",
                        str(nthreads),
                        "--nworkers",
                        "1",
                        "--local-directory",
                        str(directory / "work"),
                        "--death-timeout",
                        "60",
                        *local,
                    ],
                    directory / f"worker-{index}.log",
                    env,
                )
            )
        wait_for_workers(cluster.address, workers)
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


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


def stop_cluster(cluster: LocalCluster) -> None:
    """Workers first (each nanny closes its worker), then the scheduler; then make sure."""
    for process in reversed(cluster.processes):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its session: nanny, worker, leftovers
        process.wait(timeout=15)


# -- what the jobs run ---------------------------------------------------------------------------


class SecretContext:
    """A stand-in cloud context carrying a secret (say, an access token)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret


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
