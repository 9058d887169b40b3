"""Credentials as references, rebuilt where they are needed, and access tokens shared by jobs.

A saved context cannot hold a secret, so it names how to get one: a :class:`CredentialReference`
(``DefaultAzureCredential``, a managed identity, the Azure CLI login, a service principal whose
secret sits in a named environment variable or whose certificate sits in a file).

Tokens are brokered, so N jobs cost one token request per scope and expiry, not N::

    caller: AzureContext ── SharedTokenCredential ── one get_token per scope and expiry
               │ pickled into a job's payload: the ARM token, fetched (or cached) once
               ▼ payload over the worker's private socket (memory only, never a file)
    worker: SharedTokenCredential seeded with that token ── used until 5 min before expiry,
               then the real credential: the caller's credential object if it travelled in
               the payload, else a fresh one rebuilt here from the reference

Thread jobs share the caller's SharedTokenCredential itself, so nothing is fetched for them at
start: the first request that needs a token fetches it, once, for all of them.

Which credentials travel: an object given to ``connect_azure(credential=...)`` goes to local
workers inside the in-memory payload (azure-identity credentials pickle; a
``ClientSecretCredential`` so carries its secret, which is why only the private socket to a
local worker may carry it; a Dask task, which crosses a network, never does). A credential
built from a reference (the default) never travels: a worker that needs one rebuilds it from
the reference, in its own process, from its own environment. Resumed jobs and imported contexts
always rebuild from references.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError

from .broker import BrokerAddress, BrokerUnavailable

REFRESH_MARGIN_S = 300.0
"""A token this close to expiry is renewed (azure-core's bearer policy renews at 300 s too)."""

# reference kind -> the azure-identity class it builds (for the message of an unknown kind)
KINDS = {
    "default": "DefaultAzureCredential",
    "environment": "EnvironmentCredential",
    "managed_identity": "ManagedIdentityCredential",
    "azure_cli": "AzureCliCredential",
    "client_secret": "ClientSecretCredential",
    "client_certificate": "CertificateCredential",
    "object": "(a credential object that cannot be rebuilt)",
}


# What each kind of reference cannot be built without.
_NEEDED = {
    "client_secret": ("tenant_id", "client_id", "secret_variable"),
    "client_certificate": ("tenant_id", "client_id", "certificate_path"),
}


@dataclass(frozen=True)
class CredentialReference:
    """How to obtain a credential, without the secret: what a saved context stores.

    Build one with the class methods (``CredentialReference.client_secret(tenant, client,
    secret_variable="MY_SP_SECRET")``) and pass it as ``connect_azure(credential=...)``.
    ``kind="object"`` records a credential object given to ``connect_azure`` that has no
    reference form (its secret lives only in memory); it cannot be rebuilt elsewhere.
    ``token_cache`` names an azure-identity persistent token cache, used only where the operating
    system can encrypt it.
    """

    kind: str = "default"
    tenant_id: str | None = None
    client_id: str | None = None
    secret_variable: str | None = None
    certificate_path: str | None = None
    password_variable: str | None = None
    token_cache: str | None = None
    type_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(f"unknown credential kind {self.kind!r}: one of {', '.join(KINDS)}")
        for name, value in asdict(self).items():
            if value is not None and not isinstance(value, str):
                raise ValueError(
                    f"credential {name} must be a string, not {type(value).__name__} {value!r}"
                )
        needed = _NEEDED.get(self.kind, ())
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise ValueError(
                f"a {self.kind} credential reference needs {' and '.join(needed)} "
                f"(missing: {', '.join(missing)})"
            )

    @classmethod
    def default(cls, *, managed_identity_client_id: str | None = None) -> CredentialReference:
        """``DefaultAzureCredential``: environment, workload or managed identity, CLI login..."""
        return cls("default", client_id=managed_identity_client_id)

    @classmethod
    def environment(cls) -> CredentialReference:
        """``EnvironmentCredential``: the ``AZURE_*`` variables of the process that needs it."""
        return cls("environment")

    @classmethod
    def managed_identity(cls, client_id: str | None = None) -> CredentialReference:
        return cls("managed_identity", client_id=client_id)

    @classmethod
    def azure_cli(cls, tenant_id: str | None = None) -> CredentialReference:
        """The ``az login`` of the user running the process."""
        return cls("azure_cli", tenant_id=tenant_id)

    @classmethod
    def client_secret(
        cls,
        tenant_id: str,
        client_id: str,
        *,
        secret_variable: str = "AZURE_CLIENT_SECRET",
        token_cache: str | None = None,
    ) -> CredentialReference:
        """A service principal whose secret is in the environment variable ``secret_variable``."""
        return cls(
            "client_secret",
            tenant_id,
            client_id,
            secret_variable=secret_variable,
            token_cache=token_cache,
        )

    @classmethod
    def client_certificate(
        cls,
        tenant_id: str,
        client_id: str,
        certificate_path: str,
        *,
        password_variable: str | None = None,
        token_cache: str | None = None,
    ) -> CredentialReference:
        """A service principal with a certificate file (its password, if any, in a variable)."""
        return cls(
            "client_certificate",
            tenant_id,
            client_id,
            certificate_path=os.path.abspath(certificate_path),
            password_variable=password_variable,
            token_cache=token_cache,
        )

    @property
    def rebuildable(self) -> bool:
        """Whether another process can build the credential from this reference alone."""
        return self.kind != "object"

    def to_data(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CredentialReference:
        if not isinstance(data, Mapping):
            raise ValueError(f"credential must be a mapping, not {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})

    def build(self, authority: str | None = None) -> TokenCredential:
        """The credential this reference names, built in this process from its environment."""
        from azure import identity

        host = {"authority": authority} if authority else {}
        cache = _cache_options(self.token_cache)
        if self.kind == "default":
            client = {"managed_identity_client_id": self.client_id} if self.client_id else {}
            return identity.DefaultAzureCredential(**host, **client)
        if self.kind == "environment":
            return identity.EnvironmentCredential(**host)
        if self.kind == "managed_identity":
            return identity.ManagedIdentityCredential(client_id=self.client_id)
        if self.kind == "azure_cli":
            return identity.AzureCliCredential(tenant_id=self.tenant_id or "")
        if self.kind == "client_secret":
            assert self.tenant_id and self.client_id and self.secret_variable  # __post_init__
            return identity.ClientSecretCredential(
                self.tenant_id,
                self.client_id,
                _variable(self.secret_variable, "client secret"),
                **host,
                **cache,
            )
        if self.kind == "client_certificate":
            assert self.tenant_id and self.client_id and self.certificate_path  # __post_init__
            password = (
                _variable(self.password_variable, "certificate password")
                if self.password_variable
                else None
            )
            return identity.CertificateCredential(
                self.tenant_id,
                self.client_id,
                self.certificate_path,
                password=password,
                **host,
                **cache,
            )
        type_name = self.type_name or "of unknown type"
        raise identity.CredentialUnavailableError(
            f"the context's credential was a credential object ({type_name}) held in "
            "memory by the process that connected; its secret was never saved, so it cannot be "
            "rebuilt here: connect_azure() with it in this process, or connect with a "
            "CredentialReference, which names where the secret is (CredentialReference."
            "client_secret names the environment variable that holds it)"
        )


def _variable(name: str, what: str) -> str:
    from azure.identity import CredentialUnavailableError

    value = os.environ.get(name)
    if not value:
        raise CredentialUnavailableError(
            f"the environment variable {name}, which should hold the {what}, is not set"
        )
    return value


def _cache_options(name: str | None) -> dict[str, Any]:
    if not name:
        return {}
    from azure.identity import TokenCachePersistenceOptions

    # Never an unencrypted cache: without OS encryption the credential refuses, loudly.
    return {
        "cache_persistence_options": TokenCachePersistenceOptions(
            name=name,
            allow_unencrypted_storage=False,
        )
    }


_KNOWN_TYPES = {
    "DefaultAzureCredential": "default",
    "EnvironmentCredential": "environment",
    "ManagedIdentityCredential": "managed_identity",
    "AzureCliCredential": "azure_cli",
}


def reference_of(credential: Any) -> CredentialReference:
    """The reference a saved context keeps for a credential object given to ``connect_azure``.

    Only the type and the non-secret ids are kept. Types whose reference rebuilds the same
    credential from the environment (``DefaultAzureCredential``...) are rebuildable; anything else
    (a ``ClientSecretCredential`` whose secret is only in memory, a custom class) is not.
    """
    if isinstance(credential, CredentialReference):
        return credential
    cls = type(credential)
    from_identity = cls.__module__.split(".")[:2] == ["azure", "identity"]
    kind = _KNOWN_TYPES.get(cls.__name__) if from_identity else None
    tenant = _text(credential, "_tenant_id") or _text(credential, "tenant_id")
    client = _text(credential, "_client_id") if kind is None else None
    if kind in ("managed_identity", "default"):
        # Which managed identity it uses: rebuilt without it, a user-assigned one would
        # silently become the machine's system-assigned one.
        identity = credential if kind == "managed_identity" else _managed_identity_in(credential)
        known, client = _managed_identity_client(identity) if identity is not None else (True, None)
        if not known:
            kind = None
    return CredentialReference(
        kind or "object",
        tenant_id=tenant,
        client_id=client,
        type_name=f"{cls.__module__}.{cls.__qualname__}",
    )


def _text(credential: Any, attribute: str) -> str | None:
    value = getattr(credential, attribute, None)
    return value if isinstance(value, str) and value else None


def _managed_identity_in(credential: Any) -> Any:
    """The ``ManagedIdentityCredential`` in a ``DefaultAzureCredential``'s chain, if any."""
    from azure.identity import ManagedIdentityCredential

    chain = getattr(credential, "credentials", ())
    return next((c for c in chain if isinstance(c, ManagedIdentityCredential)), None)


def _managed_identity_client(credential: Any) -> tuple[bool, str | None]:
    """Whether a ``ManagedIdentityCredential``'s identity can be told and held by a reference,
    and its client id (``None``: the system-assigned identity).

    azure-identity keeps it only inside the credential it picked for the host (App Service,
    IMDS...): in the settings of that credential, or in its MSAL client. An identity named by
    object or resource id, or one that cannot be told, is not known: such a credential is
    recorded as an object, which only this process and its local workers can use.
    """
    inner = getattr(credential, "_credential", None)
    settings = getattr(inner, "_settings", None)
    if isinstance(settings, Mapping):
        config = dict(settings.get("identity_config") or {})
        client = settings.get("client_id") or config.pop("client_id", None)
        return not config, client if isinstance(client, str) and client else None
    named = getattr(getattr(inner, "_msal_client", None), "_managed_identity", None)
    if isinstance(named, Mapping):
        if named.get("ManagedIdentityIdType") == "SystemAssigned":
            return True, None
        if named.get("ManagedIdentityIdType") == "ClientId":
            return True, str(named.get("Id"))
    return False, None


@contextlib.contextmanager
def _as_authentication_error() -> Iterator[None]:
    """Raise a failure to get a token as ``ClientAuthenticationError``. A credential retries its
    own requests already; one that cannot reach its identity endpoint raises a connection error,
    which the retries around an ARM request would take as transient and retry, each time
    through all of the credential's own retries, for minutes."""
    try:
        yield
    except ClientAuthenticationError:
        raise
    except AzureError as exc:
        raise ClientAuthenticationError(
            message=f"the credential could not get a token: {type(exc).__name__}: {exc}"
        ) from exc


class SharedTokenCredential:
    """The credential every client of one context uses: one token request per scope (and CAE
    flag) and expiry, however many clients, threads or jobs ask at once.

    ``source`` makes the real credential, on first need only: a worker served by brokered tokens
    (``tokens`` it came with, or its session's ``broker``) never builds one. Requests with
    ``claims`` or ``tenant_id`` (challenges) bypass the cache.
    """

    def __init__(
        self,
        source: Callable[[], TokenCredential],
        tokens: Mapping[tuple[str, bool], AccessToken] | None = None,
        broker: BrokerAddress | None = None,
    ) -> None:
        self._source = source
        self._credential: TokenCredential | None = None
        self._tokens: dict[tuple[str, bool], AccessToken] = dict(tokens or {})
        self._broker = broker
        self._lock = threading.Lock()
        # When the last fetch for a scope failed, and how, while no fetch has succeeded since.
        self._failures: dict[tuple[str, bool], tuple[float, Exception]] = {}
        # How this process's token broker names it to workers (never an id(): ids are reused).
        self.source_id = secrets.token_hex(8)
        self.requests = 0  # how many tokens this process asked the real credential for

    def credential(self) -> TokenCredential:
        """The real credential behind the cache, built on first use."""
        if self._credential is None:
            self._credential = self._source()
        return self._credential

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        if claims or tenant_id:
            with self._lock:
                self.requests += 1
                credential = self.credential()
            with _as_authentication_error():
                return credential.get_token(
                    *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
                )
        key = (" ".join(scopes), enable_cae)
        # A fresh token is read without the lock: every request of every job asks, and a lock
        # held by a thread waiting for the GIL would make them queue behind it.
        token = self._tokens.get(key)
        if token is not None and token.expires_on - time.time() >= REFRESH_MARGIN_S:
            return token
        # One lock across the fetch: concurrent askers wait for the one request in flight.
        asked = time.monotonic()
        with self._lock:
            token = self._tokens.get(key)
            if token is None or token.expires_on - time.time() < REFRESH_MARGIN_S:
                self._raise_failure_since(key, asked)
                try:
                    token = self._fetched(scopes, enable_cae, kwargs)
                except Exception as exc:
                    self._failures[key] = (time.monotonic(), exc)
                    raise
                self._failures.pop(key, None)
                self._tokens[key] = AccessToken(token.token, int(token.expires_on))
            return token

    def _fetched(
        self, scopes: tuple[str, ...], enable_cae: bool, kwargs: dict[str, Any]
    ) -> AccessToken:
        """A new token: the session's (a worker's broker), else the real credential's."""
        token = self._brokered(scopes, enable_cae)
        if token is not None:
            return token
        self.requests += 1
        if enable_cae:
            kwargs["enable_cae"] = True
        with _as_authentication_error():
            return self.credential().get_token(*scopes, **kwargs)

    def _raise_failure_since(self, key: tuple[str, bool], asked: float) -> None:
        """Raise the failure of a fetch for ``key`` that ended after the caller asked (it
        waited for that fetch): each waiter trying again in turn would fail a hundred jobs
        one after another, each after the credential's own retries, for minutes."""
        failed = self._failures.get(key)
        if failed is not None and failed[0] >= asked:
            raise ClientAuthenticationError(message=str(failed[1])) from failed[1]

    def _brokered(self, scopes: tuple[str, ...], enable_cae: bool) -> AccessToken | None:
        """The session's token, or ``None`` once no session answers (then never asked again)."""
        if self._broker is None:
            return None
        try:
            return self._broker.get_token(scopes, enable_cae)
        except BrokerUnavailable:
            self._broker = None
            return None

    def fresh_tokens(self, scope: str) -> dict[tuple[str, bool], AccessToken]:
        """The cached tokens for ``scope`` that are not near expiry: what a job takes along."""
        with self._lock:
            return {
                key: token
                for key, token in self._tokens.items()
                if key[0] == scope and token.expires_on - time.time() >= REFRESH_MARGIN_S
            }

    def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if close is not None:
            close()
