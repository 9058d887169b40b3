"""The ARM emulator driven by the real, unmodified azure-mgmt-compute SDK and azure-identity."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from asjob.providers.azure.emulator import OPERATION_SECONDS_TAG, ArmEmulator
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.identity import DefaultAzureCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    HardwareProfile,
    OSProfile,
    VirtualMachine,
    VirtualMachineUpdate,
)

from tests.providers.azure.azurefuncs import point_identity_at

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
GROUP = "rg-test"
LOCATION = "westus"


class AllowHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Client-wide equivalent of the per-call ``enforce_https=False`` (ARM.md)."""

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        request.context["enforce_https"] = False


@pytest.fixture
def emulator() -> Iterator[ArmEmulator]:
    with ArmEmulator(operation_seconds=0.05, page_size=10) as arm:
        yield arm


@pytest.fixture
def credential(
    emulator: ArmEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DefaultAzureCredential]:
    point_identity_at(emulator, monkeypatch)
    with DefaultAzureCredential() as credential:
        yield credential


def _client(emulator: ArmEmulator, credential: Any, **kwargs: Any) -> ComputeManagementClient:
    kwargs.setdefault("per_call_policies", [AllowHttp()])
    return ComputeManagementClient(credential, SUBSCRIPTION, base_url=emulator.base_url, **kwargs)


@pytest.fixture
def client(
    emulator: ArmEmulator, credential: DefaultAzureCredential
) -> Iterator[ComputeManagementClient]:
    with _client(emulator, credential) as client:
        yield client


def _create(client: ComputeManagementClient, name: str, **fields: Any) -> VirtualMachine:
    body = {"location": LOCATION, **fields}
    poller = client.virtual_machines.begin_create_or_update(
        GROUP, name, body, polling_interval=0.01
    )
    return poller.result()


def _requests(emulator: ArmEmulator, method: str) -> list[int]:
    return [r["status"] for r in emulator.requests() if r["method"] == method]


def test_create_returns_the_succeeded_vm_with_the_fields_sent(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    parameters = VirtualMachine(
        location=LOCATION,
        tags={"owner": "tests"},
        hardware_profile=HardwareProfile(vm_size="Standard_B1s"),
        os_profile=OSProfile(computer_name="box1", admin_username="azureuser"),
    )
    poller = client.virtual_machines.begin_create_or_update(
        GROUP, "vm-one", parameters, polling_interval=0.01
    )
    vm = poller.result()

    assert vm.provisioning_state == "Succeeded"
    assert vm.name == "vm-one"
    assert vm.type == "Microsoft.Compute/virtualMachines"
    assert vm.location == LOCATION
    assert vm.tags == {"owner": "tests"}
    assert vm.hardware_profile.vm_size == "Standard_B1s"
    assert vm.os_profile.computer_name == "box1"
    assert vm.vm_id
    assert vm.id == (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}"
        "/providers/Microsoft.Compute/virtualMachines/vm-one"
    )
    assert _requests(emulator, "PUT") == [201]
    # VM names are case-insensitive, like ARM's.
    assert client.virtual_machines.get(GROUP, "VM-ONE").vm_id == vm.vm_id


def test_a_put_on_an_existing_vm_is_an_update(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    first = _create(client, "vm-upd", tags={"v": "1"})
    second = _create(client, "vm-upd", tags={"v": "2"})

    assert _requests(emulator, "PUT") == [201, 200]
    assert second.vm_id == first.vm_id
    assert second.tags == {"v": "2"}


def test_begin_update_patches_the_vm(client: ComputeManagementClient) -> None:
    _create(client, "vm-patch", tags={"a": "1"})
    poller = client.virtual_machines.begin_update(
        GROUP, "vm-patch", VirtualMachineUpdate(tags={"b": "2"}), polling_interval=0.01
    )
    assert poller.result().tags == {"b": "2"}


def test_get_of_a_missing_vm_raises_resource_not_found(client: ComputeManagementClient) -> None:
    with pytest.raises(ResourceNotFoundError) as info:
        client.virtual_machines.get(GROUP, "vm-missing")
    assert info.value.error.code == "ResourceNotFound"


def test_delete_removes_the_vm_and_a_missing_vm_is_a_204(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    _create(client, "vm-del")
    assert (
        client.virtual_machines.begin_delete(GROUP, "vm-del", polling_interval=0.01).result()
        is None
    )
    with pytest.raises(ResourceNotFoundError):
        client.virtual_machines.get(GROUP, "vm-del")

    poller = client.virtual_machines.begin_delete(GROUP, "vm-del", polling_interval=0.01)
    assert poller.done()
    assert poller.result() is None
    assert _requests(emulator, "DELETE") == [202, 204]


def _power_state(client: ComputeManagementClient, name: str) -> str:
    statuses = client.virtual_machines.instance_view(GROUP, name).statuses
    return next(s.code for s in statuses if s.code.startswith("PowerState/"))


def test_power_actions_change_the_power_state(client: ComputeManagementClient) -> None:
    _create(client, "vm-power")
    assert _power_state(client, "vm-power") == "PowerState/running"
    operations = client.virtual_machines

    assert operations.begin_power_off(GROUP, "vm-power", polling_interval=0.01).result() is None
    assert _power_state(client, "vm-power") == "PowerState/stopped"
    operations.begin_start(GROUP, "vm-power", polling_interval=0.01).result()
    assert _power_state(client, "vm-power") == "PowerState/running"
    operations.begin_deallocate(GROUP, "vm-power", polling_interval=0.01).result()
    assert _power_state(client, "vm-power") == "PowerState/deallocated"
    operations.begin_restart(GROUP, "vm-power", polling_interval=0.01).result()
    assert _power_state(client, "vm-power") == "PowerState/running"

    vm = operations.get(GROUP, "vm-power", expand="instanceView")
    assert vm.instance_view.statuses[0].code == "ProvisioningState/succeeded"


def test_a_power_action_on_a_missing_vm_raises_resource_not_found(
    client: ComputeManagementClient,
) -> None:
    with pytest.raises(ResourceNotFoundError):
        client.virtual_machines.begin_start(GROUP, "vm-missing", polling_interval=0.01)


def test_list_follows_next_links_across_pages(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    emulator.configure(operation_seconds=0)
    names = [f"vm-{i:02d}" for i in range(25)]
    for name in reversed(names):
        _create(client, name)
    _create(client, "vm-elsewhere")  # another group: in list_all, not in list
    client.virtual_machines.begin_create_or_update(
        "rg-other", "vm-elsewhere", {"location": LOCATION}, polling_interval=0
    ).result()
    emulator.clear_requests()

    assert [vm.name for vm in client.virtual_machines.list(GROUP)] == [*names, "vm-elsewhere"]
    assert len(_requests(emulator, "GET")) == 3  # pages of 10, 10 and 6
    assert len(list(client.virtual_machines.list_all())) == 27
    assert list(client.virtual_machines.list("rg-empty")) == []


def test_paging_does_not_drop_vms_when_others_are_deleted_between_pages(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    emulator.configure(operation_seconds=0)
    names = [f"vm-{i:02d}" for i in range(25)]
    for name in names:
        _create(client, name)

    pages = client.virtual_machines.list(GROUP).by_page()
    first = [vm.name for vm in next(pages)]
    # Deleting VMs already returned would shift an offset-paged listing past vm-10..vm-14.
    for name in [*first[:5], "vm-20"]:
        client.virtual_machines.begin_delete(GROUP, name, polling_interval=0).result()
    rest = [vm.name for page in pages for vm in page]

    assert first == names[:10]
    assert rest == [name for name in names[10:] if name != "vm-20"]


def test_a_failed_operation_raises_the_injected_error(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    emulator.fail_operations_for("vm-fail*", "AllocationFailed", "No capacity left in westus.")

    with pytest.raises(HttpResponseError) as info:
        _create(client, "vm-fail-1")

    assert info.value.error.code == "AllocationFailed"
    assert "No capacity left in westus." in info.value.message
    assert client.virtual_machines.get(GROUP, "vm-fail-1").provisioning_state == "Failed"
    assert _create(client, "vm-fine").provisioning_state == "Succeeded"


def test_a_failure_rule_can_target_one_kind_of_operation(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    emulator.fail_operations_for("*", "VMStopFailed", "Refused.", operation="powerOff")
    _create(client, "vm-stubborn")
    with pytest.raises(HttpResponseError) as info:
        client.virtual_machines.begin_power_off(
            GROUP, "vm-stubborn", polling_interval=0.01
        ).result()
    assert info.value.error.code == "VMStopFailed"
    assert _power_state(client, "vm-stubborn") == "PowerState/running"


def test_a_429_with_retry_after_is_retried_by_azure_core(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    emulator.inject_fault(429, retry_after=0.05, method="PUT")

    assert _create(client, "vm-throttled").provisioning_state == "Succeeded"
    assert _requests(emulator, "PUT") == [429, 201]
    assert emulator.stats()["faults_served"] == 1


def test_a_409_raises_resource_exists_error(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    emulator.inject_fault(409, method="PUT", code="Conflict", message="Injected conflict.")
    with pytest.raises(ResourceExistsError) as info:
        _create(client, "vm-409")
    assert info.value.error.code == "Conflict"
    assert _requests(emulator, "PUT") == [409]  # no Retry-After: not retried


def test_a_second_operation_while_one_runs_is_a_conflict(client: ComputeManagementClient) -> None:
    body = {"location": LOCATION, "tags": {OPERATION_SECONDS_TAG: "0.5"}}
    started = time.monotonic()
    poller = client.virtual_machines.begin_create_or_update(
        GROUP, "vm-busy", body, polling_interval=0.02
    )
    try:
        with pytest.raises(ResourceExistsError) as info:
            client.virtual_machines.begin_create_or_update(GROUP, "vm-busy", body)
        assert info.value.error.code == "OperationNotAllowed"
        with pytest.raises(ResourceExistsError):
            client.virtual_machines.begin_delete(GROUP, "vm-busy")
    finally:
        vm = poller.result()
    assert vm.provisioning_state == "Succeeded"
    assert time.monotonic() - started >= 0.5  # the tag set this VM's operation time


def test_a_continuation_token_resumes_in_a_new_client_without_a_second_put(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    body = {"location": LOCATION, "tags": {OPERATION_SECONDS_TAG: "0.3"}}
    poller = client.virtual_machines.begin_create_or_update(
        GROUP, "vm-resume", body, polling_interval=0.02
    )
    token = poller.continuation_token()
    try:
        with (
            DefaultAzureCredential() as other_credential,
            _client(emulator, other_credential) as other_client,
        ):
            resumed = other_client.virtual_machines.begin_create_or_update(
                GROUP, "vm-resume", None, continuation_token=token, polling_interval=0.02
            )
            vm = resumed.result()
    finally:
        poller.result()

    assert vm.provisioning_state == "Succeeded"
    assert vm.name == "vm-resume"
    assert _requests(emulator, "PUT") == [201]


def test_per_call_enforce_https_reaches_every_poll(
    emulator: ArmEmulator, credential: DefaultAzureCredential
) -> None:
    with _client(emulator, credential, per_call_policies=[]) as client:
        poller = client.virtual_machines.begin_create_or_update(
            GROUP, "vm-percall", {"location": LOCATION}, polling_interval=0.01, enforce_https=False
        )
        assert poller.result().provisioning_state == "Succeeded"


def test_a_fractional_retry_after_on_polls_is_honoured(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    emulator.configure(operation_seconds=0.2, poll_retry_after=0.05)
    client.virtual_machines.begin_create_or_update(
        GROUP, "vm-paced", {"location": LOCATION}, polling_interval=5
    ).result()  # a 5 s polling_interval would time the test out; Retry-After wins
    polls = [r for r in emulator.requests() if "/operations/" in r["path"]]
    assert 2 <= len(polls) <= 8


def test_one_token_serves_many_requests(
    client: ComputeManagementClient, emulator: ArmEmulator
) -> None:
    _create(client, "vm-a")
    _create(client, "vm-b")
    list(client.virtual_machines.list(GROUP))

    assert emulator.token_requests == 1
    assert emulator.stats()["token_requests"] == 1
    assert emulator.stats()["unauthorized"] == 0


class _ForeignCredential:
    """A credential whose tokens the emulator never issued."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("not-issued-here", int(time.time()) + 3600)


def test_a_token_not_issued_by_the_emulator_is_rejected(emulator: ArmEmulator) -> None:
    with (
        _client(emulator, _ForeignCredential()) as client,
        pytest.raises(ClientAuthenticationError) as info,
    ):
        client.virtual_machines.get(GROUP, "vm-any")
    assert info.value.error.code == "AuthenticationFailed"
    assert emulator.stats()["unauthorized"] == 1
