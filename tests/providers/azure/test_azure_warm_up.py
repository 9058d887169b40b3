"""The fork server's rehearsal of an SDK call: it must leave nothing behind to fork with, never
leave the machine, and cost at most a moment when it fails."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import pytest
from asjob.providers.azure import warm_up
from azure.core.exceptions import HttpResponseError

from . import azurefuncs as f

REHEARSE_IN_A_FRESH_INTERPRETER = """
import json, threading
import psutil
from asjob.providers.azure import warm_up

warm_up.rehearse()
warm_up.rehearse()  # and again: a fork server preloads more than once
print(json.dumps({
    "threads": threading.active_count(),
    "connections": [str(c) for c in psutil.Process().net_connections()],
}))
"""

REHEARSE_AND_TIME = """
import json, time
import azure.mgmt.compute  # a script using the SDK: its fork server rehearses
from asjob.providers.azure import warm_up

started = time.monotonic()
warm_up.rehearse()
print(json.dumps(time.monotonic() - started))
"""


def test_the_rehearsal_leaves_no_thread_or_connection_behind() -> None:
    left = f.run_python(REHEARSE_IN_A_FRESH_INTERPRETER)
    assert left == {"threads": 1, "connections": []}


@contextmanager
def proxy(answer: bool) -> Iterator[tuple[str, list[socket.socket]]]:
    """A loopback "proxy" that counts the connections it gets, and either drops each at once
    (``answer=False``: a proxy that refuses) or holds it open, unanswered (a blackhole)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(connection)
            if not answer:
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        done.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


@pytest.mark.parametrize("answer", [False, True], ids=["refusing", "blackhole"])
def test_the_rehearsal_never_goes_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch, answer: bool
) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with proxy(answer) as (url, accepted):
        for name in f.PROXY_VARIABLES:
            monkeypatch.setenv(name, url)
        seconds = f.run_python(REHEARSE_AND_TIME)

    assert accepted == []
    assert seconds < 5  # not the retries' minutes (refusing) or a read timeout (blackhole)


class _Unavailable(BaseHTTPRequestHandler):
    """The rehearsal's server answering 503 with a long Retry-After, as a busy ARM would."""

    protocol_version = "HTTP/1.0"
    puts = 0

    def do_PUT(self) -> None:
        type(self).puts += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": {"code": "ServiceUnavailable", "message": "busy"}}).encode()
        self.send_response(503)
        self.send_header("Retry-After", "30")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_failing_rehearsal_costs_a_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warm_up, "_CannedArm", _Unavailable)
    started = time.monotonic()
    with pytest.raises(HttpResponseError):
        warm_up.rehearse()

    assert time.monotonic() - started < 2  # not the Retry-After, not a second attempt
    assert _Unavailable.puts == 1
