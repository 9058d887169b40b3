"""The ARM routes: virtual-machine requests and operation polls, answered from the store.

    request ──► bearer token checked ──► injected fault? ──► route (case-insensitive, like ARM)
            ──► api-version required ──► handler ──► Reply (or ArmError)

The long-running-operation headers follow what the generated SDK code accepts (see ARM.md):
a PUT answers 201/200 with ``Azure-AsyncOperation`` and no ``Retry-After`` (a fractional one
would crash its ``int()`` parse, a zero one is pointless); DELETE and POST actions answer 202
with ``Azure-AsyncOperation`` and ``Location`` (the same URL with ``&monitor=true``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

from .replies import ArmError, Reply, retry_after_value
from .resources import ACTIONS, FAILED, IN_PROGRESS, Operation, VmKey
from .state import EmulatorState


@dataclass(frozen=True)
class ArmRequest:
    method: str
    path: str  # the URL path, still percent-encoded
    query: dict[str, str]  # first value of each parameter
    body: bytes
    authorization: str | None
    base_url: str  # "http://127.0.0.1:PORT", for the absolute URLs ARM hands out


_Route = Callable[[EmulatorState, ArmRequest, dict[str, str]], Reply]

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_GROUP = _SUB + r"/resourceGroups/(?P<rg>[^/]+)"
_VMS = r"/providers/Microsoft\.Compute/virtualMachines"
_VM = _GROUP + _VMS + r"/(?P<name>[^/]+)"


def handle(state: EmulatorState, request: ArmRequest) -> Reply:
    """Answer one ARM request; raises :class:`ArmError` for every ARM-shaped failure."""
    state.tokens.check(request.authorization)
    fault = state.faults.take(request.method, request.path)
    if fault is not None:
        state.log.count("faults_served")
        raise fault.error()
    for pattern, methods in _ROUTES:
        match = pattern.fullmatch(request.path)
        if match is None:
            continue
        route = methods.get(request.method)
        if route is None:
            raise ArmError(
                405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}."
            )
        if not request.query.get("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        groups = {k: unquote(v) for k, v in match.groupdict().items()}
        return route(state, request, groups)
    raise ArmError(404, "NotFound", f"The emulator has no route for {request.path}.")


def _put_vm(state: EmulatorState, request: ArmRequest, g: dict[str, str]) -> Reply:
    created, vm, operation = state.store.put(g["sub"], g["rg"], g["name"], _json_body(request))
    headers = {"Azure-AsyncOperation": _operation_url(request, operation)}
    return Reply(201 if created else 200, vm, headers)


def _patch_vm(state: EmulatorState, request: ArmRequest, g: dict[str, str]) -> Reply:
    body = _json_body(request)
    _, vm, operation = state.store.put(g["sub"], g["rg"], g["name"], body, merge=True)
    # The generated update code accepts 200 only, and reads Location/Retry-After as optional.
    return Reply(200, vm, {"Azure-AsyncOperation": _operation_url(request, operation)})


def _delete_vm(state: EmulatorState, request: ArmRequest, g: dict[str, str]) -> Reply:
    operation = state.store.delete(g["sub"], g["rg"], g["name"])
    if operation is None:
        return Reply(204)
    return Reply(202, None, _accepted_headers(request, operation))


def _act(state: EmulatorState, request: ArmRequest, g: dict[str, str]) -> Reply:
    action = ACTIONS[g["action"].lower()]
    operation = state.store.act(g["sub"], g["rg"], g["name"], action)
    return Reply(202, None, _accepted_headers(request, operation))


def _get_vm(state: EmulatorState, request: ArmRequest, g: dict[str, str]) -> Reply:
    expand = request.query.get("$expand", "").lower()
    vm = state.store.get(g["sub"], g["rg"], g["name"], instance_view="instanceview" in expand)
    return Reply(200, vm)


def _instance_view(state: EmulatorState, request: ArmRequest, g: dict[str, str]) -> Reply:
    return Reply(200, state.store.instance_view(g["sub"], g["rg"], g["name"]))


def _list(state: EmulatorState, request: ArmRequest, g: dict[str, str]) -> Reply:
    after = _decode_skiptoken(request.query.get("$skiptoken"))
    size = state.settings.page_size
    items, last = state.store.page(g["sub"], g.get("rg"), after, size)
    body: dict[str, Any] = {"value": items}
    if last is not None:
        # Keyset, not offset: the next page starts after the last key returned, so VMs deleted
        # meanwhile cannot shift the remaining ones out of sight.
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        query["$skiptoken"] = _encode_skiptoken(last)
        body["nextLink"] = f"{request.base_url}{request.path}?{urlencode(query, safe='$')}"
    return Reply(200, body)


def _operation(state: EmulatorState, request: ArmRequest, g: dict[str, str]) -> Reply:
    status = state.store.operation(g["sub"], g["operation"])
    headers = {}
    if status["status"] == IN_PROGRESS and state.settings.poll_retry_after is not None:
        headers["Retry-After"] = retry_after_value(state.settings.poll_retry_after)
    if request.query.get("monitor", "").lower() != "true":
        return Reply(200, status, headers)
    # The Location ("monitor") URL: 202 while running, 200 with an empty body once done, which
    # is what the SDK's final GET after a POST action expects.
    if status["status"] == IN_PROGRESS:
        location = f"{request.base_url}{request.path}?{urlencode(request.query)}"
        return Reply(202, None, {**headers, "Location": location})
    if status["status"] == FAILED:
        error = status["error"]
        raise ArmError(400, error["code"], error["message"])
    return Reply(200)


def _operation_url(request: ArmRequest, operation: Operation) -> str:
    api_version = quote(request.query["api-version"], safe="")
    return (
        f"{request.base_url}/subscriptions/{quote(operation.subscription, safe='')}"
        f"/providers/Microsoft.Compute/locations/{quote(operation.location, safe='')}"
        f"/operations/{operation.id}?api-version={api_version}"
    )


def _accepted_headers(request: ArmRequest, operation: Operation) -> dict[str, str]:
    url = _operation_url(request, operation)
    return {"Azure-AsyncOperation": url, "Location": f"{url}&monitor=true"}


def _json_body(request: ArmRequest) -> Any:
    try:
        return json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArmError(
            400, "InvalidRequestContent", f"The request content is not valid JSON: {exc}."
        ) from None


def _encode_skiptoken(key: VmKey) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _decode_skiptoken(token: str | None) -> VmKey | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError, ValueError):
        key = None
    if not (isinstance(key, list) and len(key) == 3 and all(isinstance(k, str) for k in key)):
        raise ArmError(400, "InvalidSkipToken", "The $skiptoken is not one this endpoint issued.")
    return key[0], key[1], key[2]


_ROUTE_TABLE: list[tuple[str, dict[str, _Route]]] = [
    (_GROUP + _VMS + "/?", {"GET": _list}),
    (_SUB + _VMS + "/?", {"GET": _list}),
    (_VM + "/?", {"GET": _get_vm, "PUT": _put_vm, "PATCH": _patch_vm, "DELETE": _delete_vm}),
    (_VM + "/instanceView", {"GET": _instance_view}),
    (_VM + "/(?P<action>start|powerOff|deallocate|restart)", {"POST": _act}),
    (
        _SUB + r"/providers/Microsoft\.Compute/locations/[^/]+/operations/(?P<operation>[^/]+)",
        {"GET": _operation},
    ),
]
_ROUTES = [(re.compile(pattern, re.IGNORECASE), methods) for pattern, methods in _ROUTE_TABLE]
