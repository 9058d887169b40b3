"""A rehearsal of one SDK call in a fork server, so that every worker forked from it starts warm.

The first call of a process runs code paths that later calls skip: ``isinstance`` checks
against ``collections.abc`` classes filling their caches, requests merging its settings,
azure-core building its pipeline, a model's deserialisation working out its fields. Each
worker forked from a cold server pays for all of them again, tens of milliseconds of CPU per
job. Done once in the server before it forks, the results are inherited::

    fork server: preload modules ──► rehearse() ──► gc.freeze() ──► fork workers (warm)
                                       │ a throwaway HTTP server on 127.0.0.1:0, in a thread
                                       │ PUT ─► 201 + Azure-AsyncOperation
                                       │ GET operation ─► Succeeded, GET resource ─► the model
                                       └ a client built like a job's, a static fake token

Nothing outlives it: the server thread is joined and every connection closed before any fork
(a fork server must have no other threads when it forks). No request leaves the machine: the
transport ignores the environment's proxies (``HTTP_PROXY`` without a ``NO_PROXY`` for
127.0.0.1 would send the rehearsal to the proxy). Nothing waits long: one attempt per request,
short timeouts; a rehearsal that fails only leaves the workers colder.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from azure.core.credentials import AccessToken
from tenacity import stop_after_attempt

from .context import AzureContext, _Live, _pooled_transport
from .credentials import reference_of
from .retries import Retries

_SUBSCRIPTION = "00000000-0000-0000-0000-00000000a5a5"
_FAR_FUTURE = 4_102_444_800  # 2100-01-01
TIMEOUT_S = 2.0
"""The longest the rehearsal waits to connect to, or hear from, its own loopback server."""


class _StaticToken:
    """A credential that never asks anyone: the rehearsal's server checks nothing."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("rehearsal", _FAR_FUTURE)


class _CannedArm(BaseHTTPRequestHandler):
    """Answers as ARM does for a VM creation that is accepted, polled once and done."""

    # One request per connection: a kept-alive one would hold a handler thread waiting.
    protocol_version = "HTTP/1.0"
    disable_nagle_algorithm = True

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = self.path.split("?", 1)[0]
        operation = f"http://{self.headers['Host']}/operations/rehearsal?api-version=1"
        self._answer(201, _resource(path, "Creating"), {"Azure-AsyncOperation": operation})

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/operations/"):
            self._answer(200, {"status": "Succeeded"})
        else:
            self._answer(200, _resource(path, "Succeeded"))

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _resource(path: str, state: str) -> dict[str, Any]:
    return {
        "id": path,
        "name": path.rstrip("/").rsplit("/", 1)[-1],
        "type": "Microsoft.Compute/virtualMachines",
        "location": "westus",
        "properties": {"provisioningState": state},
    }


@contextlib.contextmanager
def _canned_arm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CannedArm)
    server.daemon_threads = False  # joined by server_close: no thread may outlive this
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def rehearse() -> None:
    """Create one VM with azure-mgmt-compute against a throwaway loopback server, through a
    client built the way a job's is (same policies, retry policy, pooled transport), except
    that it never retries, never waits long, and never goes through a proxy."""
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.compute.models import VirtualMachine

    credential = _StaticToken()
    reference = reference_of(credential)
    with _canned_arm() as url:
        context = AzureContext(
            subscription_id=_SUBSCRIPTION,
            credential=reference,
            base_url=url,
            polling_interval=0,
            retries=Retries(stop=stop_after_attempt(1)),
            _live=_Live(reference, None, credential),
        )
        transport = _pooled_transport(
            trust_env=False, connection_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S
        )
        client = context.shared_client(ComputeManagementClient, transport=transport)
        try:
            poller = client.virtual_machines.begin_create_or_update(
                "rehearsal", "vm", VirtualMachine(location="westus")
            )
            poller.continuation_token()
            poller.result()
        finally:
            client.close()
