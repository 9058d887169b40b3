"""The identity endpoint and the bearer tokens it issues.

The emulator answers the App Service managed-identity route that the real
``DefaultAzureCredential`` takes when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set
(``GET /msi/token?api-version=2019-08-01&resource=...`` with ``X-IDENTITY-HEADER``).

Tokens are signed, not stored: ``<expires_on>.<nonce>.<hmac>`` with a key that lives only in
this process, so checking one needs no table and memory stays flat however many are issued.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

from .replies import ArmError, Reply


class TokenIssuer:
    """Issues tokens and checks ``Authorization`` headers.

    ``lifetime`` is called at each issue, so a changed setting applies to the next token.
    """

    def __init__(self, lifetime: Callable[[], float] = lambda: 3600.0) -> None:
        self._lifetime = lifetime
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._issued = 0

    @property
    def issued(self) -> int:
        """How many tokens the identity endpoint has handed out."""
        with self._lock:
            return self._issued

    def issue(self) -> tuple[str, int]:
        """A new token and its expiry (epoch seconds)."""
        expires_on = int(time.time() + self._lifetime())
        payload = f"{expires_on}.{secrets.token_urlsafe(12)}"
        with self._lock:
            self._issued += 1
        return f"{payload}.{self._sign(payload)}", expires_on

    def answer(self, identity_header: str | None, resource: str | None) -> Reply:
        """The identity endpoint's reply to one token request."""
        # App Service rejects a request without the secret header; so does the emulator, so that a
        # credential that silently took another route shows up as an error rather than a pass.
        if not identity_header:
            return Reply(400, {"statusCode": 400, "message": "X-IDENTITY-HEADER is missing."})
        if not resource:
            return Reply(
                400, {"statusCode": 400, "message": "The 'resource' parameter is missing."}
            )
        token, expires_on = self.issue()
        return Reply(
            200,
            {
                "access_token": token,
                # App Service sends epoch seconds as a string; MSAL int()s it.
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
            },
        )

    def check(self, authorization: str | None) -> None:
        """Raise a 401 ``ArmError`` unless ``authorization`` carries a live token of ours."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated("The request does not carry a bearer token.")
        payload, _, signature = token.strip().rpartition(".")
        # Bytes, not str: compare_digest refuses non-ASCII str, and headers may carry anything.
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise _unauthenticated("The bearer token was not issued by this endpoint.")
        if int(payload.partition(".")[0]) <= time.time():
            raise _unauthenticated("The bearer token has expired.")

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()[:32]


def _unauthenticated(message: str) -> ArmError:
    # Never a WWW-Authenticate header: azure-core would read it as a claims challenge.
    return ArmError(401, "AuthenticationFailed", message)
