"""Create VMs in parallel on a Dask cluster: the provisioning sample's jobs, as remote jobs.

Run: python samples/provision_on_dask.py [--count 10] [--scheduler tcp://host:8786]

The jobs are those of samples/provision_vms.py (``begin_create_or_update`` through
``as_job``), with ``kind=DaskKind(address)``: the job objects stay here, the calls run on the
cluster's workers, each in a process of its own, and their results (the ``VirtualMachine``
models) come back here. The table shows which worker ran each job.

Without ``--scheduler`` (or ``ASJOB_DASK_SCHEDULER``) it starts a scheduler and two workers on
127.0.0.1 and stops them at the end. Without ``AZURE_SUBSCRIPTION_ID`` the VMs are created at a
local ARM endpoint (the emulator) on this machine, which the workers must reach: use a cluster
on this machine then. Exit status non-zero if any job failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from azure.mgmt.compute import ComputeManagementClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from asjob.providers.azure import AzureContext, connect_azure
from provision_vms import (
    EMULATOR_OPERATION_SECONDS,
    emulator_context,
    local_arm_endpoint,
    show_progress,
    vm_parameters,
    vm_table,
)

import asjob
from asjob.kinds.dask import SCHEDULER_ENV, DaskKind

WORKERS = 2
THREADS_PER_WORKER = 8  # provisioning jobs mostly wait on Azure: a thread each


@contextlib.contextmanager
def local_dask_cluster() -> Iterator[str]:
    """A ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1; yield the address."""
    dask = str(Path(sys.executable).with_name("dask"))
    loopback = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    with tempfile.TemporaryDirectory(prefix="asjob-dask-") as scratch:
        scheduler_file = Path(scratch, "scheduler.json")
        processes: list[subprocess.Popen[bytes]] = []

        def start(*args: str) -> None:
            processes.append(
                subprocess.Popen(
                    [dask, *args, *loopback],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

        try:
            start("scheduler", "--port", "0", "--scheduler-file", str(scheduler_file))
            deadline = time.monotonic() + 60
            while not scheduler_file.exists() or not scheduler_file.read_text().strip():
                if time.monotonic() > deadline or processes[0].poll() is not None:
                    raise RuntimeError("the Dask scheduler did not start")
                time.sleep(0.05)
            address = str(json.loads(scheduler_file.read_text())["address"])
            for _ in range(WORKERS):
                start(
                    "worker",
                    address,
                    "--nthreads",
                    str(THREADS_PER_WORKER),
                    "--local-directory",
                    scratch,
                )
            yield address
        finally:
            for process in reversed(processes):  # workers first, then the scheduler
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def wait_for_workers(address: str) -> None:
    from distributed import Client

    with Client(address, set_as_default=False, timeout=30) as client:
        client.wait_for_workers(WORKERS, timeout=60)


def provision(
    context: AzureContext, kind: DaskKind, count: int, group: str, location: str, offline: bool
) -> int:
    compute = context.client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update, kind=kind)
    names = [f"asjob-dask-vm{i:02d}" for i in range(1, count + 1)]

    started = time.monotonic()
    jobs = [create(group, name, vm_parameters(name, location, offline)) for name in names]
    show_progress(jobs, started)
    elapsed = time.monotonic() - started
    print()
    print(asjob.format_jobs(jobs))

    vms: list[Any] = []
    failed: list[str] = []
    per_worker: dict[str, int] = {}
    for job in jobs:
        per_worker[job.location] = per_worker.get(job.location, 0) + 1
        try:
            vms.append(job.receive())
        except Exception as exc:  # report every failure, then exit non-zero
            failed.append(f"{job.name}: {type(exc).__name__}: {exc}")
    print()
    print(vm_table(vms))
    spread = ", ".join(f"{n} on {worker}" for worker, n in sorted(per_worker.items()))
    print(f"\n{len(vms)} of {count} VMs in {elapsed:.1f}s as remote jobs ({spread})")
    asjob.remove_job(jobs)
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="how many VMs (default 10)")
    parser.add_argument(
        "--scheduler",
        default=os.environ.get(SCHEDULER_ENV),
        help=f"the Dask scheduler's address (default ${SCHEDULER_ENV}; none: "
        "start a local cluster)",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        address = args.scheduler
        if not address:
            address = stack.enter_context(local_dask_cluster())
            wait_for_workers(address)
            print(f"Started a local Dask cluster at {address} ({WORKERS} workers)")
        kind = DaskKind(address)
        subscription = os.environ.get("AZURE_SUBSCRIPTION_ID")
        if subscription:
            group = os.environ["AZURE_RESOURCE_GROUP"]
            print(f"Creating {args.count} VMs in subscription {subscription}, group {group}")
            return provision(
                connect_azure(subscription),
                kind,
                args.count,
                group,
                os.environ.get("AZURE_LOCATION", "westus2"),
                offline=False,
            )
        url = stack.enter_context(local_arm_endpoint())
        print(
            f"No AZURE_SUBSCRIPTION_ID: creating {args.count} VMs at the local ARM endpoint "
            f"{url} (each operation takes {EMULATOR_OPERATION_SECONDS:g}s)"
        )
        return provision(
            emulator_context(url), kind, args.count, "rg-asjob-sample", "westus", offline=True
        )


if __name__ == "__main__":
    sys.exit(main())
