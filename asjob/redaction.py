"""What a stored failure keeps of the HTTP requests its exception carries.

An SDK's error often holds the request it answered: azure-core's ``HttpResponseError`` keeps
``response.request``, and the ``requests`` response beneath it keeps its own. Such a request's
headers carry the caller's access token, its body what was sent (a new VM's admin password, a
client secret sent to a token endpoint) and its URL perhaps a signature. A failure is stored,
and the store outlives the job and is read by other processes, so each object in it that looks
like an HTTP request (it has ``method``, ``url`` and a ``headers`` mapping) is pickled as a copy
without its body, the values of credential-bearing headers and URL query parameters replaced by
``REDACTED``. Everything else the exception holds (status, response headers and body, error
model) is kept, so the caller still gets the SDK's own exception with what it reports.
"""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "REDACTED"
# Parts of header and query-parameter names that mark a credential, in lower case.
_SECRET_NAME_PARTS = (
    "authorization",
    "cookie",
    "credential",
    "identity-header",
    "key",
    "password",
    "secret",
    "sig",
    "token",
)
# Where HTTP libraries keep what a request sends besides its headers (body, cookies): azure-core
# (both request types), requests' Request and PreparedRequest, httpx.
_SENT_ATTRIBUTES = (
    "_data",
    "_files",
    "_content",
    "data",
    "files",
    "json",
    "body",
    "content",
    "_cookies",
    "cookies",
)


def dumps(value: Any) -> bytes:
    """``pickle.dumps(value)`` with every HTTP request in it redacted (see module doc)."""
    buffer = io.BytesIO()
    _RedactingPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


class _RedactingPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if not _looks_like_request(obj):
            return NotImplemented
        # The copy's own reduction: its state, not the copy itself, is pickled next, so this
        # is not asked about it again.
        return _redacted(obj).__reduce_ex__(pickle.HIGHEST_PROTOCOL)


def _looks_like_request(obj: Any) -> bool:
    if isinstance(obj, type):
        return False
    try:
        return (
            isinstance(getattr(obj, "method", None), str)
            and getattr(obj, "url", None) is not None
            and isinstance(getattr(obj, "headers", None), Mapping)
        )
    except Exception:  # a property that fails to compute: not a request we can read
        return False


def _redacted(request: Any) -> Any:
    redacted = copy.copy(request)
    state = getattr(redacted, "__dict__", None)
    if state is None:
        return redacted
    for name in _SENT_ATTRIBUTES:
        if name in state:
            state[name] = None
    headers = state.get("headers", None)
    if isinstance(headers, Mapping):
        state["headers"] = _redacted_headers(headers)
    for name in ("url", "_url"):
        if isinstance(state.get(name), str):
            state[name] = redacted_url(state[name])
    return redacted


def _redacted_headers(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    plain = {k: REDACTED if is_secret_name(str(k)) else v for k, v in headers.items()}
    try:  # of the same type, e.g. a case-insensitive mapping
        kept: Mapping[str, Any] = type(headers)(plain)  # type: ignore[call-arg]
    except Exception:
        kept = plain
    return kept


def redacted_url(url: str) -> str:
    """``url`` with the values of its credential-bearing query parameters redacted."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(is_secret_name(name) for name, _ in query):
        return url
    kept = [(name, REDACTED if is_secret_name(name) else value) for name, value in query]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_NAME_PARTS)
