"""The session's token broker: tokens for its local workers, when they ask.

A process job's worker needs an ARM token only if its call reaches Azure. So the session does
not fetch one for every job it starts (a start then waited on the identity endpoint, even for a
job that never touches Azure). It listens on a Unix socket in a private directory instead, and a
worker asks when it first needs a token; the session answers from the context's shared cache,
so all its jobs together cause one token request per scope and expiry::

    session                                       worker (process kind)
      payload: socket path, session key,  ──────►   SharedTokenCredential, on a cache miss
               which context                         │
      broker thread ◄── {key, context, scopes} ──────┘
        └─ context's SharedTokenCredential ── token ──► cached in the worker until near expiry

Tokens travel over the socket only: never in a file, argv, environment or log. On Linux the
socket is in the abstract namespace (no file, so a killed session leaves nothing behind) and a
peer must run as the same user; elsewhere it lives in a directory only the user can enter. A
request must carry the session's key, which only the in-memory channel to the worker carries. A
worker whose session has gone (a detached job) gets no answer and uses its own credential.
"""

from __future__ import annotations

import atexit
import contextlib
import hmac
import json
import os
import secrets
import shutil
import socket
import struct
import sys
import tempfile
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

if TYPE_CHECKING:
    from .credentials import SharedTokenCredential

CONNECT_TIMEOUT_S = 2.0
"""A live session accepts at once; longer means it is gone or frozen."""
ANSWER_TIMEOUT_S = 120.0
"""The session may itself be waiting on the identity endpoint for the token."""
MAX_MESSAGE = 1 << 16


class BrokerUnavailable(Exception):
    """No session answered: the worker uses its own credential."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where a worker asks for tokens, and for which of the session's contexts. Travels only
    in a local worker's payload: ``key`` proves the asker got it from there."""

    path: str
    key: str
    source: str

    def get_token(self, scopes: tuple[str, ...], enable_cae: bool) -> AccessToken:
        """The session's token for ``scopes``. Raises :class:`BrokerUnavailable` when no
        session answers, ``ClientAuthenticationError`` when the session could not get one."""
        request = {"key": self.key, "source": self.source, "scopes": scopes, "cae": enable_cae}
        connected = False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(CONNECT_TIMEOUT_S)
                conn.connect(self.path)
                connected = True
                conn.settimeout(ANSWER_TIMEOUT_S)
                conn.sendall(json.dumps(request).encode() + b"\n")
                answer = json.loads(_read_line(conn))
        except TimeoutError:
            if not connected:
                raise BrokerUnavailable("the session does not accept requests") from None
            # It took the request, and is waiting on the identity endpoint for the token:
            # asking that endpoint from here too would be a second request, waited for again.
            raise ClientAuthenticationError(
                message=f"the session's credential gave no token within {ANSWER_TIMEOUT_S:.0f} s"
            ) from None
        except (OSError, ValueError) as exc:
            raise BrokerUnavailable(str(exc)) from None
        if "unavailable" in answer:
            raise BrokerUnavailable(str(answer["unavailable"]))
        if "error" in answer:
            raise ClientAuthenticationError(message=f"the session's credential: {answer['error']}")
        return AccessToken(answer["token"], int(answer["expires_on"]))


class TokenBroker:
    """Serves the tokens of this process's contexts to its workers (one per process)."""

    def __init__(self) -> None:
        self._directory: str | None = None
        if sys.platform.startswith("linux"):
            self.path = f"\0asjob-tokens-{secrets.token_hex(16)}"
        else:
            self._directory = tempfile.mkdtemp(prefix="asjob-tokens-")  # mode 0700
            self.path = os.path.join(self._directory, "broker")
        self.key = secrets.token_urlsafe(32)
        # Weakly: a context the caller has dropped, and whose workers have all handed off or
        # ended, is served no more; held here, every context a long session made would live
        # on, each with its clients' open connections.
        self._sources: weakref.WeakValueDictionary[str, SharedTokenCredential] = (
            weakref.WeakValueDictionary()
        )
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(128)
        self._pid = os.getpid()
        threading.Thread(target=self._serve, name="asjob-token-broker", daemon=True).start()
        atexit.register(self.close)

    def address(self, tokens: SharedTokenCredential) -> BrokerAddress:
        """Where a worker asks for the tokens ``tokens`` holds."""
        with self._lock:
            self._sources[tokens.source_id] = tokens
        return BrokerAddress(self.path, self.key, tokens.source_id)

    def close(self) -> None:
        if os.getpid() != self._pid:
            return  # a forked child: the directory is its parent's
        with contextlib.suppress(OSError):
            # Shut down first: it wakes the thread blocked in accept(), which close() alone
            # does not, and an abstract socket stays reachable while that thread holds it.
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(
                target=self._answer, args=(conn,), name="asjob-token-request", daemon=True
            ).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(CONNECT_TIMEOUT_S)
                if not _same_user(conn):
                    return
                request = json.loads(_read_line(conn))
                reply = self._reply(request)
                conn.settimeout(CONNECT_TIMEOUT_S)
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except (OSError, ValueError):
                return  # the asker went away, or sent nonsense: it has no answer coming

    def _reply(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not hmac.compare_digest(
            str(request.get("key", "")), self.key
        ):
            return {"error": "not this session's worker"}
        with self._lock:
            tokens = self._sources.get(str(request.get("source")))
        if tokens is None:  # dropped here: the worker uses its own credential
            return {"unavailable": "no such context in this session (any more)"}
        scopes = [str(scope) for scope in request.get("scopes") or []]
        try:
            token = tokens.get_token(*scopes, enable_cae=bool(request.get("cae")))
        except Exception as exc:  # the worker raises it as an authentication error
            return {"error": f"{type(exc).__name__}: {exc}"}
        return {"token": token.token, "expires_on": token.expires_on}


def _same_user(conn: socket.socket) -> bool:
    """Whether the peer runs as this user (Linux's SO_PEERCRED; elsewhere the socket's
    private directory and the key are the guard)."""
    peer_credentials = getattr(socket, "SO_PEERCRED", None)
    if peer_credentials is None:
        return True
    raw = conn.getsockopt(socket.SOL_SOCKET, peer_credentials, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return bool(uid == os.getuid())


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            raise OSError("the connection closed before a whole message arrived")
        data += chunk
        if len(data) > MAX_MESSAGE:
            raise ValueError("message too long")
    return data


_broker: TokenBroker | None = None
_broker_lock = threading.Lock()


def session_broker() -> TokenBroker:
    """This process's broker, started on first use (again in a forked child)."""
    global _broker
    with _broker_lock:
        if _broker is None or _broker._pid != os.getpid():
            _broker = TokenBroker()
        return _broker
