"""The session's token broker (broker.py): a real Unix socket, asked as a worker asks it."""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from typing import Any

import pytest
from asjob.providers.azure import broker as broker_module
from asjob.providers.azure.broker import BrokerAddress, BrokerUnavailable, TokenBroker
from asjob.providers.azure.credentials import SharedTokenCredential
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

SCOPE = "https://management.azure.com/.default"


class CountingCredential:
    """Hands out numbered tokens, or fails with ``error``."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return AccessToken(f"token-{self.calls}", int(time.time()) + 3600)


@pytest.fixture
def broker() -> Any:
    served = TokenBroker()
    yield served
    served.close()


def test_workers_share_the_sessions_one_token(broker: TokenBroker) -> None:
    real = CountingCredential()
    session_tokens = SharedTokenCredential(lambda: real)  # the broker holds it weakly
    address = broker.address(session_tokens)
    workers = [SharedTokenCredential(CountingCredential, broker=address) for _ in range(3)]
    assert [w.get_token(SCOPE).token for w in workers] == ["token-1"] * 3
    assert real.calls == 1
    assert [w.requests for w in workers] == [0, 0, 0]  # none asked a credential of its own


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's abstract sockets")
def test_its_socket_is_no_file_a_killed_session_could_leave_behind(broker: TokenBroker) -> None:
    assert broker.path.startswith("\0")


@pytest.mark.skipif(not hasattr(socket, "SO_PEERCRED"), reason="needs SO_PEERCRED")
def test_a_process_of_another_user_gets_no_answer(broker: TokenBroker) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run as another user")
    address = broker.address(SharedTokenCredential(CountingCredential))
    asking = textwrap.dedent(f"""
        import json, socket
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(10)
            conn.connect({address.path!r})
            try:
                conn.sendall(json.dumps({{"key": {address.key!r}, "source": {address.source!r},
                                          "scopes": ["s"], "cae": False}}).encode() + b"\\n")
                print(repr(conn.recv(4096)))
            except (BrokenPipeError, ConnectionResetError):
                print(repr(b""))  # closed before or after the request: the same refusal
    """)
    other_user = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*other_user, "/usr/bin/python3", "-c", asking], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "b''"  # closed without a word, though it had the key


def test_a_request_without_the_sessions_key_gets_no_token(broker: TokenBroker) -> None:
    address = broker.address(SharedTokenCredential(CountingCredential))
    forged = BrokerAddress(address.path, "a guess", address.source)
    with pytest.raises(ClientAuthenticationError, match="not this session's worker"):
        forged.get_token((SCOPE,), False)


def test_the_sessions_failure_reaches_the_worker_as_an_authentication_error(
    broker: TokenBroker,
) -> None:
    failing = CountingCredential(error=RuntimeError("identity endpoint unreachable"))
    session_tokens = SharedTokenCredential(lambda: failing)
    address = broker.address(session_tokens)
    worker = SharedTokenCredential(CountingCredential, broker=address)
    with pytest.raises(ClientAuthenticationError, match="identity endpoint unreachable"):
        worker.get_token(SCOPE)
    assert worker.requests == 0  # it did not try again with a credential of its own


class SlowCredential(CountingCredential):
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        time.sleep(1.0)  # an identity endpoint that takes its time
        return super().get_token(*scopes, **kwargs)


def test_a_worker_whose_session_is_slow_to_get_the_token_does_not_ask_for_one_too(
    broker: TokenBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request per scope and expiry: asking the identity endpoint from the worker as well
    would be a second request, to an endpoint that is slow already."""
    monkeypatch.setattr(broker_module, "ANSWER_TIMEOUT_S", 0.2)
    session_tokens = SharedTokenCredential(SlowCredential)
    worker = SharedTokenCredential(CountingCredential, broker=broker.address(session_tokens))

    with pytest.raises(ClientAuthenticationError, match="gave no token within"):
        worker.get_token(SCOPE)
    assert worker.requests == 0


class SlowFailingCredential(CountingCredential):
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        time.sleep(0.3)  # an identity endpoint that cannot be reached, after its retries
        return super().get_token(*scopes, **kwargs)


def test_askers_waiting_on_a_fetch_that_fails_share_its_failure() -> None:
    """Not each its own try in turn: with Azure unreachable, N jobs failed one by one, each
    after the credential's retries (about 5 s each)."""
    unreachable = ClientAuthenticationError("identity endpoint unreachable")
    failing = SlowFailingCredential(error=unreachable)
    tokens = SharedTokenCredential(lambda: failing)
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            tokens.get_token(SCOPE)
        except ClientAuthenticationError as exc:
            errors.append(exc)

    askers = [threading.Thread(target=ask) for _ in range(5)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(30)

    assert len(errors) == 5 and all("unreachable" in str(e) for e in errors)
    assert failing.calls == 1
    with pytest.raises(ClientAuthenticationError):  # a later ask tries again
        tokens.get_token(SCOPE)
    assert failing.calls == 2


def test_a_worker_whose_session_is_gone_uses_its_own_credential(broker: TokenBroker) -> None:
    session_tokens = SharedTokenCredential(CountingCredential)
    address = broker.address(session_tokens)
    broker.close()
    with pytest.raises(BrokerUnavailable):
        address.get_token((SCOPE,), False)
    own = CountingCredential()
    worker = SharedTokenCredential(lambda: own, broker=address)
    assert worker.get_token(SCOPE).token == "token-1"
    assert worker.requests == 1 and own.calls == 1


def test_a_context_the_session_dropped_is_served_no_more(broker: TokenBroker) -> None:
    session_tokens = SharedTokenCredential(CountingCredential)
    address = broker.address(session_tokens)
    dropped = weakref.ref(session_tokens)
    del session_tokens
    gc.collect()
    assert dropped() is None  # the broker did not keep it (nor what it holds) alive
    own = CountingCredential()
    worker = SharedTokenCredential(lambda: own, broker=address)
    assert worker.get_token(SCOPE).token == "token-1"  # its own credential's
    assert worker.requests == 1
