"""The HTTP layer: a threading HTTP/1.1 server and the one handler that turns routes into bytes.

    socket ──► Handler._dispatch ──┬─ /_emulator/...  ──► control.handle
                                   ├─ /msi/token      ──► TokenIssuer.answer
                                   └─ anything else   ──► arm.handle
           ◄── Handler._send ◄── Reply, or ArmError.reply(), or a 500 for anything unexpected

This is the only place that catches exceptions from routes, so no traceback ever reaches a
client: an unexpected one is logged to stderr and answered as an ARM ``InternalServerError``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import arm, control
from .replies import ArmError, Reply
from .state import EmulatorState

logger = logging.getLogger("asjob.providers.azure.emulator")

IDENTITY_PATH = "/msi/token"
MAX_BODY_BYTES = 16 * 1024 * 1024


class EmulatorServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` bound to ``address`` that serves ``state``.

    It remembers its open connections so that :meth:`close_connections` can cut keep-alive
    clients off at shutdown; otherwise their handler threads would go on answering from a
    server that was stopped.
    """

    daemon_threads = True
    # Many jobs start at once; the default backlog of 5 makes the kernel drop their SYNs.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], state: EmulatorState) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can stall for
        # seconds on a machine without DNS; a loopback server does not need a name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def base_url(self) -> str:
        host = f"[{self.server_name}]" if ":" in self.server_name else self.server_name
        return f"http://{host}:{self.server_port}"

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-answer, and sockets cut by close_connections(), are normal.
        if isinstance(sys.exc_info()[1], OSError):
            return
        logger.exception("unexpected error on a connection from %s", client_address)


class Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses one connection per client
    # Without TCP_NODELAY every keep-alive answer waits ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    # An idle keep-alive connection holds a thread; let it go after a while.
    timeout = 300

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.track(self.connection, open_=False)
        super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path, method, state = url.path, self.command, self.server.state
        query = dict(reversed(parse_qsl(url.query, keep_blank_values=True)))  # first value wins
        try:
            body = self._read_body()
        except ValueError as exc:
            reply = ArmError(400, "InvalidRequestContent", str(exc)).reply()
            # The body was not read, so the stream is out of step: hang up after answering.
            reply.headers["Connection"] = "close"
            self._send(reply)
            return
        is_control = path.startswith(control.PREFIX)
        try:
            if is_control:
                reply = control.handle(state, method, path, body)
            elif path.rstrip("/") == IDENTITY_PATH:
                reply = self._identity(method, query)
            else:
                request = arm.ArmRequest(
                    method,
                    path,
                    query,
                    body,
                    self.headers.get("Authorization"),
                    self.server.base_url,
                )
                reply = arm.handle(state, request)
        except ArmError as exc:
            reply = exc.reply()
        except Exception:
            logger.exception("internal error answering %s %s", method, self.path)
            reply = ArmError(
                500, "InternalServerError", "The emulator failed unexpectedly."
            ).reply()
        if not is_control:
            # Logged before the answer leaves, so a client that reads the log next sees it.
            arm_request = path.rstrip("/") != IDENTITY_PATH
            state.log.record(method, path, url.query, reply.status, arm=arm_request)
        self._send(reply)

    def _identity(self, method: str, query: dict[str, str]) -> Reply:
        if method != "GET":
            return Reply(405, {"statusCode": 405, "message": f"{method} is not supported."})
        return self.server.state.tokens.answer(
            self.headers.get("X-IDENTITY-HEADER"), query.get("resource")
        )

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ValueError("Content-Length is not a number.") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise ValueError(f"The request body must be 0-{MAX_BODY_BYTES} bytes.")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            except ValueError:
                raise ValueError("Malformed chunked request body.") from None
            if size < 0:  # read(-1) would read until the client closes, past any limit
                raise ValueError("Malformed chunked request body.")
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers, then the blank line
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError(f"The request body must be 0-{MAX_BODY_BYTES} bytes.")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _send(self, reply: Reply) -> None:
        data = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        if reply.status != 204:  # RFC 9110: a 204 carries no Content-Length
            self.send_header("Content-Length", str(len(data)))
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if data:
            self.wfile.write(data)
