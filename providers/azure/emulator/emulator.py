"""``ArmEmulator``: start and stop a local ARM endpoint, and steer it from Python.

Every method here mirrors a control endpoint under ``/_emulator/`` (see ``control.py``), so a
test can steer an emulator it started in-process the same way it steers one in a subprocess.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
from types import TracebackType
from typing import Any

from .faults import FailureRule, Fault
from .requestlog import RequestRecord
from .server import IDENTITY_PATH, EmulatorServer
from .state import EmulatorState, Settings


class ArmEmulator:
    """A loopback endpoint that the real azure-mgmt-compute SDK can drive offline.

    It serves virtual-machine operations with ARM's long-running-operation protocol, an App
    Service-style identity endpoint for ``DefaultAzureCredential`` and the control endpoints,
    from a ``ThreadingHTTPServer`` on a daemon thread. Use it as a context manager, or call
    :meth:`start` and :meth:`stop`. ``port=0`` picks a free port; read :attr:`base_url`.

    ``operation_seconds`` is how long each long-running operation stays ``InProgress`` (a VM
    tag ``emulator-operation-seconds`` overrides it per VM); ``page_size`` is the number of VMs
    per list page; ``poll_retry_after`` adds ``Retry-After`` to operation polls;
    ``token_lifetime`` is the lifetime of issued tokens in seconds. ``host`` must be a loopback
    address (``ValueError`` otherwise).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        operation_seconds: float = 1.0,
        page_size: int = 50,
        *,
        poll_retry_after: float | None = None,
        token_lifetime: float = 3600.0,
        max_logged_requests: int = 100_000,
    ) -> None:
        self.host = loopback_host(host)
        self.port = port
        settings = Settings(operation_seconds, page_size, poll_retry_after, token_lifetime)
        self._state = EmulatorState(settings, max_logged_requests)
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ArmEmulator:
        """Bind and serve; ``OSError`` if the port is taken. Returns ``self``."""
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = EmulatorServer((self.host, self.port), self._state)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how fast stop() returns
            name=f"arm-emulator-{server.server_port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and cut open connections; idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        server.close_connections()
        thread.join()

    def __enter__(self) -> ArmEmulator:
        return self if self._server is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: pass it as ``base_url`` to the management client."""
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._server.base_url

    @property
    def identity_endpoint(self) -> str:
        """The value for ``IDENTITY_ENDPOINT`` so that ``DefaultAzureCredential`` asks us."""
        return self.base_url + IDENTITY_PATH

    @property
    def settings(self) -> Settings:
        """A copy of the current settings; change them with :meth:`configure`."""
        return dataclasses.replace(self._state.settings)

    def configure(self, **changes: Any) -> None:
        """Change settings while serving (``operation_seconds=0.1``, ``page_size=10``, ...)."""
        self._state.settings.update(changes)

    def inject_fault(
        self,
        status: int,
        count: int | None = 1,
        *,
        retry_after: float | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> Fault:
        """Answer the next ``count`` matching ARM requests with ``status`` and an ARM error body.

        ``count=None`` keeps serving the fault until :meth:`clear_faults`.
        """
        fault = Fault(status, count, retry_after, method, path_contains, code, message)
        self._state.faults.add(fault)
        return fault

    def clear_faults(self) -> None:
        self._state.faults.clear()

    def fail_operations_for(
        self,
        name_pattern: str,
        code: str = "InternalOperationError",
        message: str = "The operation failed (injected by the emulator).",
        *,
        operation: str | None = None,
    ) -> FailureRule:
        """Make operations on VMs matching ``name_pattern`` (fnmatch) end ``Failed``.

        The rule applies to operations started from now on; ``operation`` limits it to one kind
        (``"create"``, ``"delete"``, ``"powerOff"``, ...).
        """
        rule = FailureRule(name_pattern, code, message, operation)
        self._state.failures.add(rule)
        return rule

    def clear_failures(self) -> None:
        self._state.failures.clear()

    def requests(self) -> list[RequestRecord]:
        """The request log (ARM and identity requests), oldest first."""
        return self._state.log.entries()

    def clear_requests(self) -> None:
        self._state.log.clear()

    @property
    def token_requests(self) -> int:
        """How many tokens the identity endpoint has issued."""
        return self._state.tokens.issued

    def stats(self) -> dict[str, Any]:
        """The counters served at ``/_emulator/stats``."""
        return self._state.stats()


def loopback_host(host: str) -> str:
    """``host`` as an address to bind, or ``ValueError`` unless it is a loopback address."""
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return host.strip("[]")
    except ValueError:
        pass
    raise ValueError(f"the emulator listens on loopback only; {host!r} is not a loopback address")
