"""A Dask cluster on this machine, loopback only: the ``dask scheduler`` and ``dask worker``
programs started as child processes. For samples, benchmarks and tests that have no cluster
of their own; real deployments point ``ASJOB_DASK_SCHEDULER`` at theirs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 60.0
_LOOPBACK = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]


@dataclass
class LoopbackCluster:
    """A running scheduler and its workers; each process logs to ``directory/<name>.log``."""

    address: str
    directory: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.directory.glob("*.log"))


def _dask_program() -> str:
    return str(Path(sys.executable).with_name("dask"))


def start_loopback_cluster(
    directory: Path,
    workers: int = 2,
    nthreads: int = 2,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> LoopbackCluster:
    """Start a scheduler and ``workers`` workers on 127.0.0.1; return once all have joined.

    ``env`` and ``cwd`` are the workers' (e.g. a ``PYTHONPATH`` that lets them import the
    functions the jobs run).
    """
    directory.mkdir(parents=True, exist_ok=True)
    scheduler_file = directory / "scheduler.json"
    cluster = LoopbackCluster(address="", directory=directory)

    def spawn(name: str, *args: str) -> None:
        with open(directory / f"{name}.log", "wb") as log:
            # A session of its own: stopping it ends the process and whatever it started.
            cluster.processes.append(
                subprocess.Popen(
                    [_dask_program(), *args, *_LOOPBACK],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=None if env is None else dict(env),
                    cwd=cwd,
                    start_new_session=True,
                )
            )

    try:
        spawn("scheduler", "scheduler", "--port", "0", "--scheduler-file", str(scheduler_file))
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            if time.monotonic() > deadline or cluster.processes[0].poll() is not None:
                raise RuntimeError(f"the Dask scheduler did not start:\n{cluster.logs()}")
            time.sleep(0.05)
        time.sleep(0.05)  # the file is written in one go, but give the writer its close
        cluster.address = str(json.loads(scheduler_file.read_text())["address"])
        for index in range(workers):
            spawn(
                f"worker-{index}",
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
            )
        import distributed

        dd: Any = distributed  # untyped package
        client = dd.Client(cluster.address, set_as_default=False, timeout=30)
        with client:
            client.wait_for_workers(workers, timeout=START_TIMEOUT_S)
    except BaseException:
        stop_loopback_cluster(cluster)
        raise
    return cluster


def stop_loopback_cluster(cluster: LoopbackCluster) -> None:
    """Workers first (each nanny closes its worker), then the scheduler; then make sure."""
    for process in reversed(cluster.processes):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its session: nanny, worker, leftovers
        process.wait(timeout=15)


@contextlib.contextmanager
def loopback_cluster(
    workers: int = 2,
    nthreads: int = 2,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Iterator[LoopbackCluster]:
    """:func:`start_loopback_cluster` in a scratch directory, stopped on the way out."""
    with tempfile.TemporaryDirectory(prefix="asjob-dask-") as scratch:
        cluster = start_loopback_cluster(Path(scratch), workers, nthreads, env, cwd)
        try:
            yield cluster
        finally:
            stop_loopback_cluster(cluster)
