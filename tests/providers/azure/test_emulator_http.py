"""The ARM emulator on the wire: authentication, validation, control endpoints and the CLI."""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import asjob.providers.azure.emulator as emulator_package
import pytest
from asjob.providers.azure.emulator import ArmEmulator, Fault, Settings, loopback_host
from asjob.providers.azure.emulator.tokens import TokenIssuer

VM_PATH = (
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    "?api-version=2026-04-01"
)


class Wire:
    """A keep-alive HTTP/1.1 connection to the emulator, as the SDK would hold one."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        assert url.hostname == "127.0.0.1"
        self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        self.token: str | None = None

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, Any]:
        headers = dict(headers or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        data = None if body is None else json.dumps(body).encode()
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        raw = response.read()
        return response.status, response.headers, json.loads(raw) if raw else None

    def sign_in(self) -> None:
        status, _, body = self.call(
            "GET",
            "/msi/token?api-version=2019-08-01&resource=https://management.azure.com",
            headers={"X-IDENTITY-HEADER": "x"},
        )
        assert status == 200
        self.token = body["access_token"]


@pytest.fixture
def emulator() -> Iterator[ArmEmulator]:
    with ArmEmulator(operation_seconds=0) as arm:
        yield arm


@pytest.fixture
def wire(emulator: ArmEmulator) -> Iterator[Wire]:
    wire = Wire(emulator.base_url)
    yield wire
    wire.connection.close()


def test_the_public_names_are_sorted_and_exported() -> None:
    def isort_style(name: str) -> tuple[int, str]:  # ruff's RUF022 order
        return (0 if name.isupper() else 1 if name[0].isupper() else 2), name

    assert emulator_package.__all__ == sorted(emulator_package.__all__, key=isort_style)
    assert all(hasattr(emulator_package, name) for name in emulator_package.__all__)


def test_a_request_without_a_token_is_a_401_without_a_challenge(wire: Wire) -> None:
    status, headers, body = wire.call("GET", VM_PATH)
    assert status == 401
    assert body["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" not in headers


def test_the_identity_endpoint_answers_like_app_service(wire: Wire, emulator: ArmEmulator) -> None:
    status, _, body = wire.call("GET", "/msi/token?api-version=2019-08-01&resource=r")
    assert status == 400  # no X-IDENTITY-HEADER

    wire.sign_in()
    status, _, body = wire.call(
        "GET", "/msi/token?api-version=2019-08-01&resource=r", headers={"X-IDENTITY-HEADER": "x"}
    )
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["resource"] == "r"
    assert isinstance(body["expires_on"], str) and int(body["expires_on"]) > 0
    assert emulator.token_requests == 2


def test_an_expired_or_forged_token_is_refused() -> None:
    from asjob.providers.azure.emulator.replies import ArmError

    issuer = TokenIssuer(lambda: 0)
    expired, _ = issuer.issue()
    with pytest.raises(ArmError, match="expired"):
        issuer.check(f"Bearer {expired}")
    live, _ = TokenIssuer().issue()
    with pytest.raises(ArmError, match="not issued"):
        issuer.check(f"Bearer {live}")  # another issuer's key
    with pytest.raises(ArmError, match="not issued"):
        issuer.check("Bearer caf\u00e9")


def test_arm_requests_need_an_api_version(wire: Wire) -> None:
    wire.sign_in()
    status, _, body = wire.call("GET", VM_PATH.split("?")[0])
    assert status == 400
    assert body["error"]["code"] == "MissingApiVersionParameter"


def test_a_put_needs_json_with_a_location(wire: Wire) -> None:
    wire.sign_in()
    status, _, body = wire.call("PUT", VM_PATH, {"properties": {}})
    assert (status, body["error"]["code"]) == (400, "LocationRequired")
    wire.connection.request("PUT", VM_PATH, body=b"{not json", headers=_auth(wire))
    response = wire.connection.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["error"]["code"] == "InvalidRequestContent"


def test_the_lro_headers_follow_arm(wire: Wire, emulator: ArmEmulator) -> None:
    wire.sign_in()
    status, headers, body = wire.call("PUT", VM_PATH, {"location": "West US"})
    assert status == 201
    assert body["properties"]["provisioningState"] == "Creating"
    assert "Retry-After" not in headers  # a fractional one would crash the SDK's int()
    operation_url = headers["Azure-AsyncOperation"]
    assert operation_url.startswith(emulator.base_url + "/subscriptions/sub/providers/")
    assert "/locations/westus/operations/" in operation_url

    _, _, status_body = wire.call("GET", operation_url)
    assert status_body["status"] == "Succeeded"
    assert {"name", "startTime", "endTime"} <= set(status_body)

    status, headers, body = wire.call("POST", VM_PATH.replace("?", "/powerOff?"))
    assert (status, body) == (202, None)
    assert headers["Location"] == headers["Azure-AsyncOperation"] + "&monitor=true"
    status, _, body = wire.call("GET", headers["Location"])
    assert (status, body) == (200, None)


def test_a_failed_operation_reports_its_error_in_the_status_body(
    wire: Wire, emulator: ArmEmulator
) -> None:
    emulator.fail_operations_for("vm*", "AllocationFailed", "Nope.")
    wire.sign_in()
    _, headers, _ = wire.call("PUT", VM_PATH, {"location": "westus"})
    _, _, body = wire.call("GET", headers["Azure-AsyncOperation"])
    assert body["status"] == "Failed"
    assert body["error"] == {"code": "AllocationFailed", "message": "Nope."}


def test_faults_are_served_then_used_up(wire: Wire) -> None:
    wire.sign_in()
    fault = {"status": 503, "count": 2, "retry_after": 0.5, "method": "GET", "path_contains": "vm1"}
    assert wire.call("POST", "/_emulator/faults", fault)[0] == 201
    assert wire.call("GET", "/_emulator/faults")[2][0]["count"] == 2

    for _ in range(2):
        status, headers, body = wire.call("GET", VM_PATH)
        assert (status, headers["Retry-After"]) == (503, "0.5")
        assert body["error"]["code"] == "ServiceUnavailable"
    assert wire.call("GET", VM_PATH)[0] == 404  # used up; the VM does not exist

    wire.call("POST", "/_emulator/faults", {"status": 500, "count": None})
    assert wire.call("GET", VM_PATH)[0] == 500
    assert wire.call("DELETE", "/_emulator/faults")[0] == 204
    assert wire.call("GET", VM_PATH)[0] == 404

    status, _, body = wire.call("POST", "/_emulator/faults", {"status": 200})
    assert (status, body["error"]["code"]) == (400, "InvalidRequestContent")


def test_the_request_log_and_stats(wire: Wire) -> None:
    wire.sign_in()
    wire.call("PUT", VM_PATH, {"location": "westus"})
    wire.call("GET", VM_PATH)

    _, _, log = wire.call("GET", "/_emulator/requests")
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", "/msi/token", 200),
        ("PUT", VM_PATH.split("?")[0], 201),
        ("GET", VM_PATH.split("?")[0], 200),
    ]
    _, _, stats = wire.call("GET", "/_emulator/stats")
    assert stats["token_requests"] == 1
    assert (stats["requests"], stats["puts"], stats["gets"], stats["vms"]) == (2, 1, 1, 1)

    assert wire.call("DELETE", "/_emulator/requests")[0] == 204
    assert wire.call("GET", "/_emulator/requests")[2] == []


def test_failures_and_settings_through_the_control_endpoints(
    wire: Wire, emulator: ArmEmulator
) -> None:
    rule = {"name_pattern": "vm-fail*", "code": "Boom", "message": "Injected."}
    assert wire.call("POST", "/_emulator/failures", rule)[0] == 201
    assert wire.call("GET", "/_emulator/failures")[2][0]["name_pattern"] == "vm-fail*"
    assert wire.call("DELETE", "/_emulator/failures")[0] == 204
    assert wire.call("GET", "/_emulator/failures")[2] == []

    status, _, settings = wire.call("POST", "/_emulator/settings", {"page_size": 7})
    assert (status, settings["page_size"]) == (200, 7)
    assert emulator.settings.page_size == 7
    status, _, _ = wire.call(
        "POST", "/_emulator/settings", {"page_size": 3, "operation_seconds": -1}
    )
    assert status == 400
    assert emulator.settings.page_size == 7  # all or nothing
    assert wire.call("POST", "/_emulator/settings", {"colour": "blue"})[0] == 400
    assert wire.call("GET", "/_emulator/nothing")[0] == 404


def test_an_internal_error_is_an_arm_500_and_is_logged(
    wire: Wire, emulator: ArmEmulator, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(emulator._state.store, "get", broken)
    wire.sign_in()
    with caplog.at_level(logging.ERROR, logger="asjob.providers.azure.emulator"):
        status, _, body = wire.call("GET", VM_PATH)
    assert (status, body["error"]["code"]) == (500, "InternalServerError")
    assert "bug" not in json.dumps(body)
    assert "RuntimeError: bug" in caplog.text
    assert wire.call("GET", "/_emulator/stats")[0] == 200  # the connection survived


def test_stop_cuts_keep_alive_connections() -> None:
    emulator = ArmEmulator().start()
    wire = Wire(emulator.base_url)
    try:
        assert wire.call("GET", "/_emulator/stats")[0] == 200
        emulator.stop()
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            wire.call("GET", "/_emulator/stats")
    finally:
        wire.connection.close()
        emulator.stop()


def test_only_loopback_hosts_are_accepted() -> None:
    assert loopback_host("localhost") == "127.0.0.1"
    assert loopback_host("127.0.0.2") == "127.0.0.2"
    assert loopback_host("::1") == "::1"
    for host in ["0.0.0.0", "10.0.0.1", "example.com", ""]:
        with pytest.raises(ValueError, match="loopback"):
            ArmEmulator(host=host)


def test_settings_and_faults_validate() -> None:
    with pytest.raises(ValueError):
        Settings(page_size=0)
    with pytest.raises(ValueError):
        Fault(status=200)
    with pytest.raises(ValueError):
        Fault.from_json({"status": 429, "colour": "red"})


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "settings",
    [
        {"operation_seconds": NAN},  # its due time would stall every operation after it
        {"operation_seconds": INF},
        {"token_lifetime": NAN},
        {"token_lifetime": INF},  # every token request was a 500 (int(inf))
        {"poll_retry_after": NAN},
    ],
)
def test_settings_that_are_no_number_of_seconds_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be a number"):
        Settings(**settings)
    with pytest.raises(ValueError, match="must be a number"):
        Settings().update(settings)


def test_a_fault_whose_retry_after_is_no_number_is_refused() -> None:
    with pytest.raises(ValueError, match="retry_after must be a number"):
        Fault.from_json({"status": 429, "retry_after": NAN})


@pytest.mark.parametrize(
    ("path", "body"),
    [("/_emulator/settings", '{"page_size": 1e400}'), ("/_emulator/faults", '{"status": 1e400}')],
)
def test_a_control_number_too_large_for_an_integer_is_a_400(
    wire: Wire, path: str, body: str
) -> None:
    wire.connection.request("POST", path, body=body.encode())
    response = wire.connection.getresponse()
    answer = json.loads(response.read())

    assert response.status == 400
    assert answer["error"]["code"] == "InvalidRequestContent"


def test_a_negative_chunk_size_is_refused_at_once(emulator: ArmEmulator) -> None:
    """read(-1) would read until the client closes: past the body limit, and no answer."""
    url = urlsplit(emulator.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=5) as conn:
        conn.sendall(
            b"PUT " + VM_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n-1\r\n" + b"x" * 1000
        )
        answer = conn.recv(4096)  # the connection stays open, as a client streaming on would
    assert answer.startswith(b"HTTP/1.1 400")


def test_patch_requests_are_counted_as_patches(wire: Wire) -> None:
    wire.sign_in()
    wire.call("PUT", VM_PATH, {"location": "westus"})
    wire.call("PATCH", VM_PATH, {"tags": {"a": "b"}})

    assert wire.call("GET", "/_emulator/stats")[2]["patches"] == 1


def _auth(wire: Wire) -> dict[str, str]:
    return {"Authorization": f"Bearer {wire.token}"}


def _module() -> list[str]:
    return [sys.executable, "-m", "asjob.providers.azure.emulator"]


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_cli_prints_its_url_first_and_stops_cleanly(stop_signal: signal.Signals) -> None:
    process = subprocess.Popen(
        [*_module(), "--port", "0", "--operation-seconds", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        wire = Wire(base_url)
        assert wire.call("GET", "/_emulator/stats")[0] == 200
        wire.connection.close()

        process.send_signal(stop_signal)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert stdout == ""
    assert "Traceback" not in stderr


def _started(*options: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*_module(), "--port", "0", *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("http://127.0.0.1:")
    return process


def _ended_within(process: subprocess.Popen[str], seconds: float) -> bool:
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    finally:
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    return True


def test_the_cli_stops_at_a_second_signal_that_comes_while_it_stops() -> None:
    """Ctrl-C in a terminal sends SIGINT to the emulator too, and the sample that started it
    then sends SIGTERM: the second signal came inside the first one's handler, which hung."""
    for _ in range(8):  # it hung about one time in three
        process = _started()
        time.sleep(0.3)  # settled in its wait, where a handler that takes a lock could hang
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGTERM)
        assert _ended_within(process, 10)
        assert process.returncode == 0


def test_the_cli_stops_when_its_input_ends_if_asked_to() -> None:
    """What a parent that is killed leaves behind: the end of the pipe it held."""
    process = _started("--until-stdin-closes")
    assert process.stdin is not None
    process.stdin.close()
    assert _ended_within(process, 10)
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("options", "status", "message"),
    [
        (["--port", "70000"], 1, "error: cannot listen on 127.0.0.1:70000"),
        (["--operation-seconds", "nan"], 2, "error: operation_seconds must be a number"),
    ],
)
def test_the_cli_refuses_bad_options_in_one_line(
    options: list[str], status: int, message: str
) -> None:
    result = subprocess.run([*_module(), *options], capture_output=True, text=True, timeout=30)

    assert result.returncode == status
    assert result.stdout == ""
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1


def test_the_cli_refuses_a_host_that_is_not_loopback() -> None:
    result = subprocess.run(
        [*_module(), "--host", "0.0.0.0"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "loopback" in result.stderr
