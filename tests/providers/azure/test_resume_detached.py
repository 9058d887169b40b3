"""``asjob resume`` (a detached resume) of a thread job continues it in a worker process."""

from __future__ import annotations

from asjob.providers.azure.emulator import ArmEmulator
from azure.mgmt.compute.models import VirtualMachine

import asjob
from asjob.session import Session

from . import azurefuncs as f
from .test_azure_resume import start_slow_create, wait_for_resume_data


def test_a_thread_job_resumed_detached_continues_in_a_process(
    arm: ArmEmulator, session: Session
) -> None:
    job = start_slow_create(arm, "vm-thread-resumed", seconds=1.0, kind="thread")
    wait_for_resume_data(session, job.id)
    job.stop()

    resumed = asjob.resume_job(job.id, detach=True)
    vm = resumed.receive(wait=True)

    assert session.store.get_job(resumed.id).kind == "process"
    assert isinstance(vm, VirtualMachine) and vm.name == "vm-thread-resumed"
    assert vm.provisioning_state == "Succeeded"
    assert f.requests_of(arm, "PUT") == [201]
