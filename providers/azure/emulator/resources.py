"""Virtual machines and their long-running operations: the emulator's resource state.

One lock guards all of it. An operation is due ``seconds`` after it starts. No timer thread
drives it: whichever request next touches the store settles every operation that is due, so an
idle emulator costs nothing and every reader sees a consistent picture::

    PUT / PATCH / DELETE / POST action ──► _start ──► VM marked Creating/Updating/Deleting,
                                                      (due, op) pushed on a heap
    any call ──► _settle(now) ──► pops the due operations ──► _finish: Succeeded or Failed,
                                                              the VM updated or removed

VMs are keyed by lower-cased (subscription, resource group, name), as ARM names are
case-insensitive, and kept in a sorted index too, so listing pages by key ("after the last key
returned") stays correct while other clients delete VMs between pages.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .faults import FailureRule
from .replies import ArmError

VmKey = tuple[str, str, str]
"""Lower-cased (subscription, resource group, VM name)."""

IN_PROGRESS, SUCCEEDED, FAILED = "InProgress", "Succeeded", "Failed"
OPERATION_SECONDS_TAG = "emulator-operation-seconds"
"""A VM tag whose value overrides the emulator's ``operation_seconds`` for that VM."""

RESOURCE_TYPE = "Microsoft.Compute/virtualMachines"

# Top-level fields ARM owns; anything else sent in a PUT (zones, identity, plan, ...) is echoed.
_OWNED_FIELDS = frozenset({"id", "name", "type", "location", "tags", "properties", "etag"})


@dataclass(frozen=True)
class _Kind:
    provisioning: str  # provisioningState while the operation runs
    power_during: str | None  # power state while it runs; None leaves it alone
    power_after: str | None  # power state once it succeeded; None leaves it alone


_KINDS = {
    "create": _Kind("Creating", "starting", "running"),
    "update": _Kind("Updating", None, None),
    "delete": _Kind("Deleting", None, None),
    "start": _Kind("Updating", "starting", "running"),
    "powerOff": _Kind("Updating", "stopping", "stopped"),
    "deallocate": _Kind("Updating", "deallocating", "deallocated"),
    "restart": _Kind("Updating", "starting", "running"),
}

ACTIONS = {
    "start": "start",
    "poweroff": "powerOff",
    "deallocate": "deallocate",
    "restart": "restart",
}
"""The POST actions, by lower-cased URL segment."""


_WRITE_ONLY = frozenset({"adminPassword", "customData"})  # osProfile fields ARM never returns


@dataclass
class VirtualMachine:
    subscription: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, Any]
    properties: dict[str, Any]
    extra: dict[str, Any]
    vm_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time_created: str = field(default_factory=lambda: _now_iso())
    provisioning_state: str = "Creating"
    power_state: str | None = None
    operation_id: str | None = None  # the operation in progress, if any

    def to_json(self, *, instance_view: bool = False) -> dict[str, Any]:
        # Fresh top-level dicts: the caller serialises outside the lock. Nested values are never
        # mutated in place (a PUT replaces them, a PATCH merges into copies), so sharing is safe.
        properties = dict(self.properties)
        os_profile = properties.get("osProfile")
        if isinstance(os_profile, dict) and _WRITE_ONLY & os_profile.keys():
            # ARM never returns these: they are secrets (and a continuation token, which holds
            # the first response's body, would carry them wherever it is stored).
            properties["osProfile"] = {k: v for k, v in os_profile.items() if k not in _WRITE_ONLY}
        properties.update(
            vmId=self.vm_id,
            provisioningState=self.provisioning_state,
            timeCreated=self.time_created,
        )
        if instance_view:
            properties["instanceView"] = self.instance_view()
        return {
            **self.extra,
            "id": (
                f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/providers/{RESOURCE_TYPE}/{self.name}"
            ),
            "name": self.name,
            "type": RESOURCE_TYPE,
            "location": self.location,
            "tags": dict(self.tags),
            "properties": properties,
        }

    def instance_view(self) -> dict[str, Any]:
        state = self.provisioning_state.lower()
        statuses: list[dict[str, Any]] = [
            {
                "code": f"ProvisioningState/{state}",
                "level": "Error" if state == "failed" else "Info",
                "displayStatus": f"Provisioning {state}",
                "time": _now_iso(),
            }
        ]
        if self.power_state is not None:
            statuses.append(
                {
                    "code": f"PowerState/{self.power_state}",
                    "level": "Info",
                    "displayStatus": f"VM {self.power_state}",
                }
            )
        view: dict[str, Any] = {"statuses": statuses}
        computer_name = (self.properties.get("osProfile") or {}).get("computerName")
        if computer_name:
            view["computerName"] = computer_name
        return view


@dataclass
class Operation:
    id: str
    subscription: str
    location: str  # as it appears in the operation URL: "westus"
    key: VmKey
    kind: str
    due: float  # time.monotonic() at which it finishes
    start_time: str
    failure: FailureRule | None  # decided when it starts
    previous_power: str | None
    status: str = IN_PROGRESS
    end_time: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.id,
            "status": self.status,
            "startTime": self.start_time,
        }
        if self.end_time is not None:
            body["endTime"] = self.end_time
        if self.status == FAILED and self.failure is not None:
            body["error"] = {"code": self.failure.code, "message": self.failure.message}
        return body


class VirtualMachineStore:
    """VMs and operations behind one lock; every method answers with JSON-ready data or raises
    :class:`ArmError`.

    ``operation_seconds`` is called for the default duration each time an operation starts, so
    a change of setting applies to the next operation. ``failure_for(vm_name, kind)`` returns
    the rule that fails the operation, if any. At most ``max_operations`` finished operations
    are remembered for polling; older ones are forgotten (their polls get 404).
    """

    def __init__(
        self,
        operation_seconds: Callable[[], float],
        failure_for: Callable[[str, str], FailureRule | None],
        max_operations: int = 100_000,
    ) -> None:
        self._operation_seconds = operation_seconds
        self._failure_for = failure_for
        self._max_operations = max_operations
        self._lock = threading.Lock()
        self._vms: dict[VmKey, VirtualMachine] = {}
        self._order: list[VmKey] = []  # sorted keys of self._vms
        self._operations: OrderedDict[str, Operation] = OrderedDict()
        self._due: list[tuple[float, int, str]] = []  # heap of (due, tie-breaker, operation id)
        self._sequence = itertools.count()
        self._counts: Counter[str] = Counter()

    def put(
        self, subscription: str, group: str, name: str, body: Any, *, merge: bool = False
    ) -> tuple[bool, dict[str, Any], Operation]:
        """Create or replace a VM (``merge``: PATCH it) and start the operation.

        Returns ``(created, vm_json, operation)``.
        """
        if not isinstance(body, dict):
            raise ArmError(
                400, "InvalidRequestContent", "The request content must be a JSON object."
            )
        tags, properties = body.get("tags"), body.get("properties")
        if tags is not None and not isinstance(tags, dict):
            raise ArmError(400, "InvalidRequestContent", "'tags' must be a JSON object.")
        if properties is not None and not isinstance(properties, dict):
            raise ArmError(400, "InvalidRequestContent", "'properties' must be a JSON object.")
        extra = {k: v for k, v in body.items() if k not in _OWNED_FIELDS}
        key = _key(subscription, group, name)
        with self._lock:
            self._settle()
            vm = self._vms.get(key)
            if merge and vm is None:
                raise _not_found(group, name)
            if not merge:
                location = body.get("location")
                if not isinstance(location, str) or not location.strip():
                    raise ArmError(
                        400,
                        "LocationRequired",
                        "The location property is required for this definition.",
                    )
                if vm is not None and _slug(location) != _slug(vm.location):
                    raise ArmError(
                        409,
                        "InvalidResourceLocation",
                        f"The resource '{vm.name}' already exists in location '{vm.location}'.",
                    )
            if vm is not None:
                self._check_idle(vm, "update")
            seconds = self._seconds_for(tags if tags is not None else vm.tags if vm else {})
            if vm is None:
                vm = VirtualMachine(
                    subscription, group, name, body["location"], tags or {}, properties or {}, extra
                )
                self._vms[key] = vm
                bisect.insort(self._order, key)
                kind = "create"
            else:
                if tags is not None or not merge:
                    vm.tags = tags or {}
                if merge:
                    vm.properties = _merged(vm.properties, properties or {})
                    vm.extra = {**vm.extra, **extra}
                else:
                    vm.properties, vm.extra = properties or {}, extra
                kind = "update"
            operation = self._start(vm, key, kind, seconds)
            return kind == "create", vm.to_json(), operation

    def delete(self, subscription: str, group: str, name: str) -> Operation | None:
        """Start deleting a VM; ``None`` if there is no such VM (ARM answers 204)."""
        key = _key(subscription, group, name)
        with self._lock:
            self._settle()
            vm = self._vms.get(key)
            if vm is None:
                return None
            self._check_idle(vm, "delete")
            return self._start(vm, key, "delete", self._seconds_for(vm.tags))

    def act(self, subscription: str, group: str, name: str, action: str) -> Operation:
        """Start a power action (a value of :data:`ACTIONS`)."""
        key = _key(subscription, group, name)
        with self._lock:
            self._settle()
            vm = self._vms.get(key)
            if vm is None:
                raise _not_found(group, name)
            self._check_idle(vm, action)
            return self._start(vm, key, action, self._seconds_for(vm.tags))

    def get(
        self, subscription: str, group: str, name: str, *, instance_view: bool = False
    ) -> dict[str, Any]:
        with self._lock:
            self._settle()
            vm = self._vms.get(_key(subscription, group, name))
            if vm is None:
                raise _not_found(group, name)
            return vm.to_json(instance_view=instance_view)

    def instance_view(self, subscription: str, group: str, name: str) -> dict[str, Any]:
        with self._lock:
            self._settle()
            vm = self._vms.get(_key(subscription, group, name))
            if vm is None:
                raise _not_found(group, name)
            return vm.instance_view()

    def page(
        self, subscription: str, group: str | None, after: VmKey | None, size: int
    ) -> tuple[list[dict[str, Any]], VmKey | None]:
        """Up to ``size`` VMs of a subscription (or one of its groups) sorted by key, starting
        after ``after``; plus the key to continue after, or ``None`` on the last page."""
        prefix: tuple[str, ...] = (subscription.lower(),)
        if group is not None:
            prefix += (group.lower(),)
        with self._lock:
            self._settle()
            start = bisect.bisect_left(self._order, prefix)
            if after is not None:
                start = max(start, bisect.bisect_right(self._order, after))
            keys = list(
                itertools.takewhile(
                    lambda k: k[: len(prefix)] == prefix,
                    self._order[start : start + size + 1],
                )
            )
            items = [self._vms[k].to_json() for k in keys[:size]]
            return items, (keys[size - 1] if len(keys) > size else None)

    def operation(self, subscription: str, operation_id: str) -> dict[str, Any]:
        """The status body of an operation (``status``: InProgress, Succeeded or Failed)."""
        with self._lock:
            self._settle()
            operation = self._operations.get(operation_id)
            if operation is None or operation.subscription.lower() != subscription.lower():
                raise ArmError(404, "NotFound", f"Operation '{operation_id}' was not found.")
            return operation.to_json()

    def counts(self) -> dict[str, int]:
        with self._lock:
            self._settle()
            return {
                "vms": len(self._vms),
                "operations_started": self._counts["started"],
                "operations_succeeded": self._counts[SUCCEEDED],
                "operations_failed": self._counts[FAILED],
                "operations_in_progress": sum(
                    1 for vm in self._vms.values() if vm.operation_id is not None
                ),
            }

    # --- under the lock -------------------------------------------------------------------

    def _start(self, vm: VirtualMachine, key: VmKey, kind: str, seconds: float) -> Operation:
        # The failure-rule lookup takes the rules' own lock inside ours; that lock never waits
        # on anything, so the nesting cannot deadlock.
        operation = Operation(
            id=str(uuid.uuid4()),
            subscription=vm.subscription,
            location=_slug(vm.location),
            key=key,
            kind=kind,
            due=time.monotonic() + seconds,
            start_time=_now_iso(),
            failure=self._failure_for(vm.name, kind),
            previous_power=vm.power_state,
        )
        effect = _KINDS[kind]
        vm.operation_id = operation.id
        vm.provisioning_state = effect.provisioning
        if effect.power_during is not None:
            vm.power_state = effect.power_during
        self._operations[operation.id] = operation
        heapq.heappush(self._due, (operation.due, next(self._sequence), operation.id))
        self._counts["started"] += 1
        self._forget_old_operations()
        return operation

    def _settle(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, _, operation_id = heapq.heappop(self._due)
            operation = self._operations.get(operation_id)
            if operation is not None and operation.status == IN_PROGRESS:
                self._finish(operation)

    def _finish(self, operation: Operation) -> None:
        operation.end_time = _now_iso()
        operation.status = FAILED if operation.failure is not None else SUCCEEDED
        self._counts[operation.status] += 1
        vm = self._vms.get(operation.key)
        if vm is None or vm.operation_id != operation.id:
            return
        vm.operation_id = None
        effect = _KINDS[operation.kind]
        if operation.status == FAILED:
            vm.provisioning_state = "Failed"
            if effect.power_during is not None:
                vm.power_state = operation.previous_power
        elif operation.kind == "delete":
            del self._vms[operation.key]
            del self._order[bisect.bisect_left(self._order, operation.key)]
        else:
            vm.provisioning_state = "Succeeded"
            if effect.power_after is not None:
                vm.power_state = effect.power_after

    def _forget_old_operations(self) -> None:
        excess = len(self._operations) - self._max_operations
        if excess <= 0:
            return
        # In-progress operations are never forgotten (their VM still points at them); they are
        # few (one per VM at most) and mostly recent, so the oldest entries are finished ones.
        finished: list[str] = []
        for operation_id, operation in self._operations.items():
            if len(finished) == excess:
                break
            if operation.status != IN_PROGRESS:
                finished.append(operation_id)
        for operation_id in finished:
            del self._operations[operation_id]

    def _check_idle(self, vm: VirtualMachine, requested: str) -> None:
        if vm.operation_id is not None:
            running = self._operations[vm.operation_id].kind
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Operation '{requested}' is not allowed on VM '{vm.name}' since another "
                f"operation ('{running}') is in progress.",
            )

    def _seconds_for(self, tags: dict[str, Any]) -> float:
        value = next((v for k, v in tags.items() if k.lower() == OPERATION_SECONDS_TAG), None)
        if value is None:
            return self._operation_seconds()
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = -1.0
        if not seconds >= 0:  # also rejects NaN
            raise ArmError(
                400,
                "InvalidParameter",
                f"Tag '{OPERATION_SECONDS_TAG}' must be a number of seconds >= 0, got {value!r}.",
            )
        return seconds


def _key(subscription: str, group: str, name: str) -> VmKey:
    return subscription.lower(), group.lower(), name.lower()


def _slug(location: str) -> str:
    """ARM's short form of a location: "West US" -> "westus"."""
    return location.replace(" ", "").lower()


def _merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A PATCH merge into a copy: objects merge recursively, everything else replaces."""
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _not_found(group: str, name: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{RESOURCE_TYPE}/{name}' under resource group '{group}' was not found.",
    )


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()
