"""The control endpoints under ``/_emulator/``: no authentication, not logged, JSON in and out.

=========  ======================  ===================================================
method     path                    effect
=========  ======================  ===================================================
GET        /_emulator/faults       the faults still to be served
POST       /_emulator/faults       add one (``Fault`` fields as JSON)
DELETE     /_emulator/faults       drop them all
GET        /_emulator/failures     the operation-failure rules
POST       /_emulator/failures     add one (``FailureRule`` fields as JSON)
DELETE     /_emulator/failures     drop them all
GET        /_emulator/requests     the request log, oldest first
DELETE     /_emulator/requests     empty it
GET        /_emulator/stats        counters (requests, puts, token_requests, vms, ...)
GET        /_emulator/settings     the settings
POST       /_emulator/settings     change some (``Settings`` fields as JSON)
=========  ======================  ===================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from .faults import FailureRule, Fault
from .replies import ArmError, Reply
from .state import EmulatorState

PREFIX = "/_emulator/"


def handle(state: EmulatorState, method: str, path: str, body: bytes) -> Reply:
    """Answer one control request; a malformed one raises a 400 :class:`ArmError`."""
    action = _ACTIONS.get((method, path[len(PREFIX) :].strip("/").lower()))
    if action is None:
        raise ArmError(404, "NotFound", f"No control endpoint {method} {path}.")
    try:
        return action(state, _json(body) if body else None)
    except ValueError as exc:
        raise ArmError(400, "InvalidRequestContent", str(exc)) from None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the request content is not valid JSON: {exc}") from None


def _add_fault(state: EmulatorState, data: Any) -> Reply:
    fault = Fault.from_json(data)
    state.faults.add(fault)
    return Reply(201, fault.to_json())


def _clear_faults(state: EmulatorState, data: Any) -> Reply:
    state.faults.clear()
    return Reply(204)


def _add_failure(state: EmulatorState, data: Any) -> Reply:
    rule = FailureRule.from_json(data)
    state.failures.add(rule)
    return Reply(201, rule.to_json())


def _clear_failures(state: EmulatorState, data: Any) -> Reply:
    state.failures.clear()
    return Reply(204)


def _clear_requests(state: EmulatorState, data: Any) -> Reply:
    state.log.clear()
    return Reply(204)


def _update_settings(state: EmulatorState, data: Any) -> Reply:
    if not isinstance(data, dict):
        raise ValueError("settings are a JSON object")
    state.settings.update(data)
    return Reply(200, asdict(state.settings))


_ACTIONS: dict[tuple[str, str], Callable[[EmulatorState, Any], Reply]] = {
    ("GET", "faults"): lambda state, _: Reply(200, [f.to_json() for f in state.faults.pending()]),
    ("POST", "faults"): _add_fault,
    ("DELETE", "faults"): _clear_faults,
    ("GET", "failures"): lambda state, _: Reply(200, [r.to_json() for r in state.failures.rules()]),
    ("POST", "failures"): _add_failure,
    ("DELETE", "failures"): _clear_failures,
    ("GET", "requests"): lambda state, _: Reply(200, state.log.entries()),
    ("DELETE", "requests"): _clear_requests,
    ("GET", "stats"): lambda state, _: Reply(200, state.stats()),
    ("GET", "settings"): lambda state, _: Reply(200, asdict(state.settings)),
    ("POST", "settings"): _update_settings,
}
