"""What a stored failure keeps of the credentials its exception carries.

An SDK's error often holds the request it answered: azure-core's ``HttpResponseError`` keeps
``response.request``, and the ``requests`` response beneath it keeps its own. Such a request's
headers carry the caller's access token, its body what was sent (a new VM's admin password, a
client secret sent to a token endpoint), and a URL, wherever it appears (the request's, the
response's, an error message's), may carry a signature (an Azure Storage SAS ``sig``). A
failure is stored, and the store outlives the job and is read by other processes, so it is
pickled with:

- each object that looks like an HTTP request (a ``method`` string or a ``full_url``, and a
  ``headers`` mapping) replaced by a copy without its body, cookies or auth, the values of its
  credential-bearing headers and parameters replaced by ``REDACTED``;
- in every string it holds (messages, URLs, traceback text), the values of credential-bearing
  URL query parameters and ``Bearer``/``Basic`` authorization values replaced by ``REDACTED``.

A parameter or header is credential-bearing when :func:`is_secret_name` says so (a word of its
name is ``key``, ``secret``, ``token``, ...): a few harmless ones are redacted too. Everything
else the exception holds (status, response headers and body, error model) is kept, so the
caller still gets the SDK's own exception with what it reports. A secret in plain text (not a
header, parameter or body) cannot be told from other text, and is kept.
"""

from __future__ import annotations

import copy
import copyreg
import io
import pickle
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "REDACTED"
# Words of a header, parameter or argument name that mark a credential (the name split at
# punctuation and at lower-to-upper case changes, in lower case), and endings of such words
# ("AccountKey" is one word once lowered: "accountkey").
_SECRET_WORDS = frozenset(
    {
        "assertion",
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "credential",
        "creds",
        "jwt",
        "key",
        "mfa",
        "otp",
        "passcode",
        "passphrase",
        "passwd",
        "password",
        "pat",
        "pwd",
        "sas",
        "secret",
        "sig",
        "signature",
        "token",
    }
)
_SECRET_ENDINGS = ("key", "passwd", "password", "secret", "signature", "token")
# Whole names that mark one: an Azure Functions key (?code=), the managed-identity header.
_SECRET_NAMES = frozenset({"code", "x-identity-header"})
# Of those, the ones that in text are as often something else: "code=" an exit, status or
# error code, or the keyword argument of a traceback's source line ("code=code"). Their value
# is kept when it is a number or the name itself; anything else may be a key.
_AMBIGUOUS_NAMES = frozenset({"code"})
_NAME_WORDS = re.compile(r"[^0-9A-Za-z]+|(?<=[a-z0-9])(?=[A-Z])")
# Where HTTP libraries keep what a request sends besides its headers (body, cookies, auth):
# azure-core (both request types), requests' Request and PreparedRequest, httpx, urllib.
_SENT_ATTRIBUTES = frozenset(
    {
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
        "auth",
    }
)
# A query parameter in any text: its name (group 1, with what precedes the value) and value.
# A name=value pair in any text (a URL's query, a connection string, a message): the name
# (group 2, with what follows it in group 1) and the value, quoted or up to a separator.
_QUERY_PARAMETER = re.compile(r"(?<![\w.~%-])(([\w.~%-]+)=)(\"[^\"]*\"|'[^']*'|[^&;#\s'\"<>),]*)")
# A quoted name and its quoted value, as JSON ("adminPassword": "...") and Python's repr of a
# dict ('Authorization': 'Bearer ...') show them: an SDK's network trace logs both.
_QUOTED_PAIR = re.compile(r"""((["'])([\w.-]+)\2\s*:\s*)(["'])((?:(?!\4)[^\\]|\\.)*)\4""")
# The password of a URL's user information: scheme://user:PASSWORD@host (the user may be empty).
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)([^@\s/]+)(@)")
# An HTTP authorization value in any text (a request's repr, a message quoting a header).
_AUTHORIZATION_VALUE = re.compile(r"\b(Bearer|Basic)\s+[\w.~+/=-]+", re.IGNORECASE)


def dumps(value: Any) -> bytes:
    """``pickle.dumps(value)`` with its credentials redacted (see the module doc)."""
    buffer = io.BytesIO()
    _RedactingPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(scrubbed(value))
    return buffer.getvalue()


def scrubbed(value: Any) -> Any:
    """``value`` with credential-bearing URL query values redacted in its strings, through
    lists, tuples and dicts (other objects: see :func:`dumps`); ``value`` itself if it holds
    none."""
    if isinstance(value, str):
        text = _QUERY_PARAMETER.sub(_redacted_parameter, value) if "=" in value else value
        text = _QUOTED_PAIR.sub(_redacted_pair, text) if ":" in text else text
        text = _AUTHORIZATION_VALUE.sub(r"\1 " + REDACTED, text)
        text = _URL_PASSWORD.sub(r"\1" + REDACTED + r"\3", text) if "@" in text else text
        return value if text == value else text
    if type(value) in (list, tuple):
        items = [scrubbed(item) for item in value]
        changed = any(a is not b for a, b in zip(items, value, strict=True))
        return type(value)(items) if changed else value
    if type(value) is dict:
        pairs = {key: scrubbed(item) for key, item in value.items()}
        return pairs if any(pairs[key] is not value[key] for key in value) else value
    return value


def _redacted_parameter(match: re.Match[str]) -> str:
    name, value = match.group(2), match.group(3)
    if name.lower() in _AMBIGUOUS_NAMES and (value.isdecimal() or value == name):
        return match.group(0)  # "exit code=3", "code=code" in a traceback's source line
    return match.group(1) + REDACTED if is_secret_name(name) else match.group(0)


def _redacted_pair(match: re.Match[str]) -> str:
    if not is_secret_name(match.group(3)):
        return match.group(0)
    return f"{match.group(1)}{match.group(4)}{REDACTED}{match.group(4)}"


def is_secret_name(name: str) -> bool:
    """Whether ``name`` (of a header, a parameter, an argument) names a credential: a word of
    it is one (``client_secret``, ``x-functions-key``, ``SharedAccessSignature``)."""
    if name.lower() in _SECRET_NAMES:
        return True
    words = [word.lower() for word in _NAME_WORDS.split(name) if word]
    words += [word[:-1] for word in words if word.endswith("s")]  # plurals: "api_keys"
    return any(word in _SECRET_WORDS or word.endswith(_SECRET_ENDINGS) for word in words)


class _RedactingPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        try:
            if _looks_like_request(obj):
                return _redacted_request_reduction(obj)
            return _scrubbed_reduction(obj)
        except Exception:  # an object that cannot be reduced here: pickled as it would be
            return NotImplemented


def _scrubbed_reduction(obj: Any) -> Any:
    """How ``obj`` pickles (as pickle would reduce it), its arguments and state scrubbed;
    ``NotImplemented`` when nothing in them needs it."""
    if isinstance(obj, type):
        return NotImplemented  # pickled by name
    reduce = copyreg.dispatch_table.get(type(obj))
    reduction = reduce(obj) if reduce is not None else obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    if not isinstance(reduction, tuple) or len(reduction) < 2:
        return NotImplemented  # pickled by name (a function, a class)
    parts = list(reduction)
    changed = False
    for index in (1, 2):  # the arguments of its constructor; its state
        if index < len(parts):
            clean = scrubbed(parts[index])
            changed = changed or clean is not parts[index]
            parts[index] = clean
    return tuple(parts) if changed else NotImplemented


def _looks_like_request(obj: Any) -> bool:
    if isinstance(obj, type):
        return False
    try:
        headers = getattr(obj, "headers", None)
        named = isinstance(getattr(obj, "method", None), str) or hasattr(obj, "full_url")
        return isinstance(headers, Mapping) and named
    except Exception:  # a property that fails to compute: not a request we can read
        return False


def _redacted_request_reduction(request: Any) -> Any:
    """How a redacted copy of ``request`` pickles. (Its state, not the copy itself, is pickled
    next, so the pickler does not ask about it again.)"""
    if isinstance(request, tuple) or isinstance(getattr(request, "__dict__", None), dict):
        return _redacted_request(request).__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    parts = list(request.__reduce_ex__(pickle.HIGHEST_PROTOCOL))  # its state in slots
    if len(parts) > 2:
        state = parts[2]
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__ or None, slots)
            parts[2] = tuple(_redacted_state(part) for part in state)
        else:
            parts[2] = _redacted_state(state)
    return tuple(parts)


def _redacted_state(state: Any) -> Any:
    if not isinstance(state, dict):
        return state
    return {name: _redacted_attribute(name, value) for name, value in state.items()}


def _redacted_request(request: Any) -> Any:
    if isinstance(request, tuple) and hasattr(request, "_replace"):  # a named tuple
        fields: dict[str, Any] = request._asdict()  # type: ignore[attr-defined]
        return request._replace(**{k: _redacted_attribute(k, v) for k, v in fields.items()})
    redacted = copy.copy(request)
    redacted.__dict__.update(_redacted_state(redacted.__dict__))
    return redacted


def _redacted_attribute(name: str, value: Any) -> Any:
    if name in _SENT_ATTRIBUTES:
        return None
    if isinstance(value, Mapping) and any(part in name for part in ("header", "hdrs", "param")):
        return _redacted_mapping(value)
    return scrubbed(value)


def _redacted_mapping(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    plain = {k: REDACTED if is_secret_name(str(k)) else v for k, v in mapping.items()}
    try:  # of the same type, e.g. a case-insensitive mapping
        kept: Mapping[str, Any] = type(mapping)(plain)  # type: ignore[call-arg]
    except Exception:
        kept = plain
    return kept


def redacted_url(url: str) -> str:
    """``url`` with the values of its credential-bearing query parameters redacted."""
    result: str = scrubbed(url)
    return result
