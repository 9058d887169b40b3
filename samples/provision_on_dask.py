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
import os
import sys
import time
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
from asjob.kinds.dask.loopback import loopback_cluster

WORKERS = 2
THREADS_PER_WORKER = 8  # provisioning jobs mostly wait on Azure: a thread each


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
            cluster = stack.enter_context(loopback_cluster(WORKERS, THREADS_PER_WORKER))
            address = cluster.address
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
