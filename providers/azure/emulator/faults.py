"""Fault injection: HTTP faults served instead of an answer, and operations made to end Failed.

Two different failures, because the SDK treats them differently:

* a :class:`Fault` replaces the next matching ARM *response* (429, 500, 409, ...). azure-core's
  retry policy sees it first, so it exercises retries and error mapping;
* a :class:`FailureRule` lets the request succeed but makes the long-running *operation* end
  ``Failed`` with an error body, so ``poller.result()`` raises ``HttpResponseError``.
"""

from __future__ import annotations

import fnmatch
import math
import threading
from dataclasses import asdict, dataclass
from typing import Any

from .replies import ArmError, retry_after_value

_DEFAULT_CODES = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "ResourceNotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


@dataclass
class Fault:
    """Answer the next ``count`` matching ARM requests with ``status``; ``None``: until cleared.

    ``method`` and ``path_contains`` narrow the match (case-insensitive, on the URL path without
    its query); ``retry_after`` adds a ``Retry-After`` header, which azure-core honours and which
    makes it retry *any* status >= 400.
    """

    status: int
    count: int | None = 1
    retry_after: float | None = None
    method: str | None = None
    path_contains: str | None = None
    code: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if not 400 <= self.status <= 599:
            raise ValueError(f"fault status must be 400-599, got {self.status}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"fault count must be >= 1 or None, got {self.count}")
        if self.retry_after is not None and not (
            math.isfinite(self.retry_after) and self.retry_after >= 0
        ):
            raise ValueError(f"retry_after must be a number >= 0, got {self.retry_after}")

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """Build from the control endpoint's JSON; ``ValueError`` on anything malformed."""
        if not isinstance(data, dict) or "status" not in data:
            raise ValueError("a fault is a JSON object with at least 'status'")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        try:
            return cls(
                status=int(data["status"]),
                count=None if data.get("count", 1) is None else int(data.get("count", 1)),
                retry_after=_optional_float(data.get("retry_after")),
                method=_optional_str(data.get("method")),
                path_contains=_optional_str(data.get("path_contains")),
                code=_optional_str(data.get("code")),
                message=_optional_str(data.get("message")),
            )
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(1e400)
            raise ValueError(f"invalid fault: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains.lower() in path.lower()

    def error(self) -> ArmError:
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = retry_after_value(self.retry_after)
        code = self.code or _DEFAULT_CODES.get(self.status, "InjectedFault")
        return ArmError(
            self.status, code, self.message or "Fault injected by the emulator.", headers
        )


class FaultInjector:
    """The queue of pending faults; the first matching one is served (and counted down)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str) -> Fault | None:
        """The fault to serve for this request, if any, consuming one of its ``count``."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if not fault.matches(method, path):
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        del self._faults[index]
                return fault
        return None


@dataclass(frozen=True)
class FailureRule:
    """Operations on VMs whose name matches ``name_pattern`` (fnmatch, case-insensitive) fail.

    ``operation`` limits the rule to one kind (``create``, ``update``, ``delete``, ``start``,
    ``powerOff``, ``deallocate``, ``restart``); ``None`` fails them all.
    """

    name_pattern: str
    code: str = "InternalOperationError"
    message: str = "The operation failed (injected by the emulator)."
    operation: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> FailureRule:
        if not isinstance(data, dict) or not isinstance(data.get("name_pattern"), str):
            raise ValueError("a failure rule is a JSON object with a string 'name_pattern'")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown failure rule fields: {sorted(unknown)}")
        return cls(**{key: str(value) for key, value in data.items() if value is not None})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, vm_name: str, operation: str) -> bool:
        if self.operation is not None and self.operation.lower() != operation.lower():
            return False
        return fnmatch.fnmatchcase(vm_name.lower(), self.name_pattern.lower())


class FailureRules:
    """The failure rules in force; the first matching rule decides an operation's outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FailureRule] = []

    def add(self, rule: FailureRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FailureRule]:
        with self._lock:
            return list(self._rules)

    def match(self, vm_name: str, operation: str) -> FailureRule | None:
        with self._lock:
            return next((r for r in self._rules if r.matches(vm_name, operation)), None)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
