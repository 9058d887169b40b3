"""Create many Azure VMs in parallel, each as a job: Azure PowerShell's ``New-AzVM -AsJob``.

Run: python samples/provision_vms.py [--count 10]

With no Azure subscription configured it starts a local ARM endpoint (the emulator, in its own
process) and creates the VMs there, offline, in a few seconds. With ``AZURE_SUBSCRIPTION_ID`` set
it creates real VMs, with ``DefaultAzureCredential``, in ``AZURE_RESOURCE_GROUP`` (which must
exist) on the subnet ``AZURE_SUBNET_ID``, logging in with ``~/.ssh/id_rsa.pub`` (or
``AZURE_SSH_PUBLIC_KEY``); delete them afterwards (``az group delete`` or ``begin_delete`` jobs).

It prints live progress, the VMs each job received (the ``VirtualMachine`` the synchronous call
returns) as a table, and the time taken against the time the same calls take one after another.
The exit status is non-zero if any job failed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from asjob.providers.azure import AzureContext, CredentialReference, connect_azure
from asjob.providers.azure.emulator.process import emulator_process
from azure.mgmt.compute import ComputeManagementClient

import asjob

EMULATOR_SUBSCRIPTION = "00000000-0000-0000-0000-00000000c0de"
EMULATOR_OPERATION_SECONDS = 1.0


def local_arm_endpoint() -> AbstractContextManager[str]:
    """Start the local ARM emulator as a child process; its URL; stopped on the way out."""
    return emulator_process(EMULATOR_OPERATION_SECONDS)


def emulator_context(url: str) -> AzureContext:
    # The emulator issues tokens on the App Service managed-identity route.
    os.environ["IDENTITY_ENDPOINT"] = f"{url}/msi/token"
    os.environ["IDENTITY_HEADER"] = "local-emulator"
    os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1"]))
    # Not connect_azure: a context that is never made current is never autosaved over the
    # user's real one.
    return AzureContext(
        subscription_id=EMULATOR_SUBSCRIPTION,
        credential=CredentialReference.managed_identity(),
        base_url=url,
        polling_interval=0.25,
    )


def vm_parameters(name: str, location: str, offline: bool) -> dict[str, Any]:
    key_file = Path(os.environ.get("AZURE_SSH_PUBLIC_KEY", "~/.ssh/id_rsa.pub")).expanduser()
    key = "ssh-rsa AAAA...offline" if offline else key_file.read_text().strip()
    subnet = (
        "/subscriptions/x/resourceGroups/x/providers/Microsoft.Network/virtualNetworks/"
        "x/subnets/default"
        if offline
        else os.environ["AZURE_SUBNET_ID"]
    )
    return {
        "location": location,
        "tags": {"created-by": "asjob-sample"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B1s"},
            "storageProfile": {
                "imageReference": {
                    "publisher": "Canonical",
                    "offer": "ubuntu-24_04-lts",
                    "sku": "server",
                    "version": "latest",
                },
                "osDisk": {"createOption": "FromImage", "deleteOption": "Delete"},
            },
            "osProfile": {
                "computerName": name,
                "adminUsername": "azureuser",
                "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {
                        "publicKeys": [
                            {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": key}
                        ]
                    },
                },
            },
            "networkProfile": {
                "networkApiVersion": "2022-11-01",
                "networkInterfaceConfigurations": [
                    {
                        "name": f"{name}-nic",
                        "properties": {
                            "primary": True,
                            "deleteOption": "Delete",
                            "ipConfigurations": [
                                {"name": "ipconfig1", "properties": {"subnet": {"id": subnet}}}
                            ],
                        },
                    }
                ],
            },
        },
    }


def show_progress(jobs: list[asjob.Job[Any]], started: float) -> None:
    """One line per change of the jobs' states and statuses (in place on a terminal)."""
    terminal = sys.stdout.isatty()
    shown = ""
    while True:
        statuses: dict[str, int] = {}
        for job in jobs:
            progress = job.progress
            if job.is_finished():
                key = str(job.state)
            else:  # the operation's own status, once the job has seen one
                key = progress[-1].status if progress else "Starting"
            statuses[key] = statuses.get(key, 0) + 1
        line = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
        if line != shown:
            stamp = f"[{time.monotonic() - started:5.1f}s] {len(jobs)} jobs: {line}"
            print(f"\r{stamp:<78}" if terminal else stamp, end="" if terminal else "\n", flush=True)
            shown = line
        if all(job.is_finished() for job in jobs):
            break
        asjob.wait_job(jobs, timeout=0.2)
    if terminal:
        print()


def vm_table(vms: list[Any]) -> str:
    rows = [("Name", "ProvisioningState", "Location", "VmSize", "VmId")]
    for vm in vms:
        size = vm.hardware_profile.vm_size if vm.hardware_profile else ""
        size = getattr(size, "value", size)  # an SDK enum member prints as its class
        rows.append((vm.name, vm.provisioning_state, vm.location, size, vm.vm_id))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = [
        " ".join(str(value).ljust(width) for value, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, " ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def provision(context: AzureContext, count: int, group: str, location: str, offline: bool) -> int:
    compute = context.client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update)
    names = [f"asjob-vm{i:02d}" for i in range(1, count + 1)]

    started = time.monotonic()
    jobs: list[asjob.Job[Any]] = []
    try:
        for name in names:
            jobs.append(create(group, name, vm_parameters(name, location, offline)))
        return report(jobs, started, count)
    finally:
        # Also when interrupted, even inside a start (so this session's jobs, not the list):
        # running jobs are stopped first, and none is left behind.
        asjob.remove_job(asjob.get_job(), force=True)


def report(jobs: list[asjob.Job[Any]], started: float, count: int) -> int:
    """Show the jobs' progress until they end, then what they created; the exit status."""
    print(asjob.format_jobs(jobs[:3]) + ("\n..." if count > 3 else ""))
    show_progress(jobs, started)
    elapsed = time.monotonic() - started

    vms, failed = [], []
    for job in jobs:
        try:
            vms.append(job.receive())
        except Exception as exc:  # report every failure, then exit non-zero
            failed.append(f"{job.name}: {type(exc).__name__}: {exc}")
    print()
    print(vm_table(vms))
    # One after another, each call would take as long as its own job did.
    one_by_one = sum(
        (job.end_time - job.begin_time).total_seconds()
        for job in jobs
        if job.end_time and job.begin_time
    )
    print(
        f"\n{len(vms)} of {count} VMs in {elapsed:.1f}s as parallel jobs; "
        f"one after another: ~{one_by_one:.1f}s (the sum of the jobs' own durations), "
        f"{one_by_one / max(elapsed, 1e-9):.1f}x longer"
    )
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


def vm_count(text: str) -> int:
    count = int(text)
    if count < 0:
        raise ValueError(text)
    return count


vm_count.__name__ = "number of VMs"  # what argparse calls it in an error


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=vm_count, default=10, help="how many VMs (default 10)")
    args = parser.parse_args()
    subscription = os.environ.get("AZURE_SUBSCRIPTION_ID")
    if subscription:
        group = os.environ.get("AZURE_RESOURCE_GROUP")
        if not group:
            parser.error("AZURE_SUBSCRIPTION_ID is set: set AZURE_RESOURCE_GROUP too")
        try:
            context = connect_azure(subscription)  # DefaultAzureCredential, public Azure
        except ValueError as exc:
            parser.error(str(exc))
        location = os.environ.get("AZURE_LOCATION", "westus2")
        print(f"Creating {args.count} VMs in subscription {subscription}, group {group}")
        return provision(context, args.count, group, location, offline=False)
    with local_arm_endpoint() as url:
        print(
            f"No AZURE_SUBSCRIPTION_ID: creating {args.count} VMs at the local ARM endpoint "
            f"{url} (each operation takes {EMULATOR_OPERATION_SECONDS:g}s)"
        )
        return provision(
            emulator_context(url), args.count, "rg-asjob-sample", "westus", offline=True
        )


def run() -> int:
    """``main``, ending as a command-line tool should: quietly at Ctrl-C, a SIGTERM or a
    closed pipe (``| head``), with the jobs removed and the local endpoint stopped."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted: the jobs were stopped and removed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Nothing more can be shown; the interpreter must not try again at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(run())
