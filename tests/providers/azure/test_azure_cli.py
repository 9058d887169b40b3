"""The CLI shows a received Azure model as the JSON ARM returns for it, not as a repr."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from asjob.providers.azure.emulator import ArmEmulator
from azure.mgmt.compute import ComputeManagementClient

import asjob

from . import azurefuncs as f
from .test_azure_resume import connect


def receive_in_the_cli(job_id: int, *options: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "asjob", "receive", str(job_id), "--keep", *options],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_received_vm_is_printed_as_its_arm_json(arm: ArmEmulator) -> None:
    compute = connect(arm).client(ComputeManagementClient)
    job = asjob.as_job(compute.virtual_machines.begin_create_or_update)(
        f.GROUP, "vm-shown", f.body("vm-shown")
    )
    assert job.wait(timeout=30)

    line = json.loads(receive_in_the_cli(job.id, "--json"))
    assert (line["id"], line["state"]) == (job.id, "Completed")
    for shown in [line["value"], json.loads(receive_in_the_cli(job.id))]:
        assert shown["name"] == "vm-shown"
        assert shown["properties"]["provisioningState"] == "Succeeded"
