"""``AzureContext``: an Azure connection as an immutable snapshot (``Get-AzContext``), and
``connect_azure`` (``Connect-AzAccount``), which makes one current.

A context holds data — subscription, tenant, cloud, endpoint, a :class:`CredentialReference`,
retry and polling settings — and, in memory only, a live companion: the credential object given
to ``connect_azure`` (if any) and the token cache every client of the context shares. What a
copy keeps depends on where it goes (``asjob.worker.payload.payload_channel``)::

    to_data() (a saved context, resume data)     the data: references only
    pickled for anything but a job's payload     the data (a result, the store: never a secret)
    a remote worker's payload (dask kind)        + the ARM token, brokered (fetched once here)
    a local worker's payload (process kind)      + where to ask this session for tokens when
                                                   it needs one (see broker.py) + the credential
                                                   object given to connect_azure, if it pickles

Thread jobs copy nothing: they share the context, and so its token cache, in this process.
"""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
import logging
import os
import pickle
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import requests
import requests.adapters
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import RequestsTransport
from urllib3.util.retry import Retry

import asjob
from asjob.context import Context
from asjob.worker.payload import Channel, payload_channel

from .broker import BrokerAddress, session_broker
from .credentials import CredentialReference, SharedTokenCredential, reference_of
from .retries import Retries, TenacityRetryPolicy

C = TypeVar("C")
_log = logging.getLogger("asjob.providers.azure")

# name -> (Resource Manager endpoint, ARM token audience, Entra ID authority host)
CLOUDS: dict[str, tuple[str, str, str]] = {
    "AzureCloud": (
        "https://management.azure.com/",
        "https://management.azure.com",
        "login.microsoftonline.com",
    ),
    "AzureChinaCloud": (
        "https://management.chinacloudapi.cn/",
        "https://management.chinacloudapi.cn",
        "login.chinacloudapi.cn",
    ),
    "AzureUSGovernment": (
        "https://management.usgovcloudapi.net/",
        "https://management.core.usgovcloudapi.net",
        "login.microsoftonline.us",
    ),
}
POOL_SIZE = 128
"""Connections a shared client keeps open per host (see :meth:`AzureContext.shared_client`)."""
BROKER_RETRY_S = 60.0
"""After a failed token request for a remote job's payload, payloads go without a token for this
long (each job then meets, and reports, the failure itself) instead of each start retrying it."""


def authority_for(cloud: str) -> str | None:
    """The Entra ID host credentials use: ``None`` for public Azure, so that azure-identity's
    own default (and ``AZURE_AUTHORITY_HOST``) applies."""
    return None if cloud == "AzureCloud" else CLOUDS[cloud][2]


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AllowLoopbackHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Lets bearer tokens go over plain http to a loopback endpoint (a local ARM emulator), and
    nowhere else. azure-core refuses http otherwise, and has no client-wide switch (ARM.md)."""

    def on_request(self, request: PipelineRequest[Any]) -> None:
        url = request.http_request.url
        if url.lower().startswith("http://") and is_loopback_url(url):
            request.context["enforce_https"] = False


_SUBSCRIPTION_ID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


class _Live:
    """The in-memory part of a context: the user's credential object and the shared tokens."""

    def __init__(
        self,
        reference: CredentialReference,
        authority: str | None,
        credential: TokenCredential | None = None,
        tokens: Mapping[tuple[str, bool], AccessToken] | None = None,
        broker: BrokerAddress | None = None,
    ) -> None:
        self.credential = credential
        self._reference = reference
        self._authority = authority
        self.tokens = SharedTokenCredential(self._build, tokens, broker)
        self.broker_failed_at = 0.0
        self._shippable: bool | None = None
        self.lock = threading.Lock()
        self.clients: dict[tuple[type[Any], str], Any] = {}

    def _build(self) -> TokenCredential:
        if self.credential is not None:
            return self.credential
        return self._reference.build(self._authority)

    def brokered_tokens(self, scope: str) -> dict[tuple[str, bool], AccessToken]:
        """The tokens for ``scope`` a job's payload takes along, fetched now if none is fresh,
        so that a worker does not ask for one of its own."""
        if not self.broker_failed_at or time.monotonic() - self.broker_failed_at >= BROKER_RETRY_S:
            try:
                self.tokens.get_token(scope)
            except Exception as exc:  # the job meets the same failure and reports it
                self.broker_failed_at = time.monotonic()
                _log.debug("no token to broker to jobs: %s", exc)
        return self.tokens.fresh_tokens(scope)

    def shippable_credential(self) -> TokenCredential | None:
        """The user's credential object if it can travel in a payload (it pickles)."""
        if self.credential is None:
            return None
        with self.lock:
            if self._shippable is None:
                try:
                    pickle.dumps(self.credential)
                    self._shippable = True
                except Exception:  # it does not pickle: workers rebuild from the reference
                    self._shippable = False
        return self.credential if self._shippable else None


@dataclass(frozen=True)
class Origin:
    """Marks the operations groups of a client a context built: which context, class and
    keywords, so a bound method of it can be rebuilt in a worker (see ``operations.py``)."""

    context: AzureContext
    client_class: type[Any]
    client_kwargs: dict[str, Any]


@dataclass(frozen=True)
class AzureContext(Context):
    """What a job needs to reach Azure: build one with :func:`connect_azure`.

    ``client(ComputeManagementClient)`` builds an SDK client from it, in the caller or inside a
    job (``current_context().client(...)``). ``base_url`` overrides the cloud's Resource Manager
    endpoint (``http://127.0.0.1:PORT`` for the local emulator: plain http for loopback only).
    ``client_options`` are passed to every client; they live in memory only (never saved, and
    left out when the context is pickled other than into a job's payload: a result, a record).
    """

    provider: ClassVar[str] = "azure"

    subscription_id: str | None = None
    tenant_id: str | None = None
    credential: CredentialReference = field(default_factory=CredentialReference)
    cloud: str = "AzureCloud"
    base_url: str | None = None
    polling_interval: float | None = None
    retries: Retries = field(default_factory=Retries, compare=False)
    client_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _live: _Live | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("subscription_id", "tenant_id", "cloud", "base_url"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, not {type(value).__name__} {value!r}")
        interval = self.polling_interval
        if interval is not None and (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not interval >= 0  # also NaN
        ):
            raise ValueError(f"polling_interval must be zero or more seconds, not {interval!r}")
        if not isinstance(self.credential, CredentialReference):
            raise TypeError(
                f"credential must be a CredentialReference, not {type(self.credential).__name__}"
            )
        if self.subscription_id is not None and not _SUBSCRIPTION_ID.fullmatch(
            self.subscription_id
        ):
            raise ValueError(
                f"subscription_id {self.subscription_id!r} is not an Azure subscription id "
                "(a GUID, such as 00000000-0000-0000-0000-000000000000)"
            )
        if self.cloud not in CLOUDS:
            raise ValueError(f"unknown cloud {self.cloud!r}: one of {', '.join(CLOUDS)}")
        if self.base_url is not None:
            scheme = urlsplit(self.base_url).scheme.lower()
            if scheme not in ("http", "https"):
                raise ValueError(f"base_url must be an http(s) URL, not {self.base_url!r}")
            if scheme == "http" and not is_loopback_url(self.base_url):
                raise ValueError(
                    f"base_url {self.base_url!r}: plain http is allowed for loopback addresses "
                    "only (tokens would travel in clear); use https"
                )
        if self._live is None:
            object.__setattr__(self, "_live", _Live(self.credential, authority_for(self.cloud)))

    # -- endpoints ----------------------------------------------------------------------------

    @property
    def resource_manager(self) -> str:
        """The Resource Manager endpoint clients talk to."""
        return self.base_url or CLOUDS[self.cloud][0]

    @property
    def arm_scope(self) -> str:
        """The token scope for Resource Manager (the cloud's, also for a local endpoint)."""
        return CLOUDS[self.cloud][1] + "/.default"

    # -- credentials and clients --------------------------------------------------------------

    @property
    def token_credential(self) -> SharedTokenCredential:
        """The credential to give SDK clients: tokens shared by every client and job."""
        assert self._live is not None
        return self._live.tokens

    def client(self, client_class: type[C], **kwargs: Any) -> C:
        """An SDK client (``ComputeManagementClient``, any azure-mgmt client) on this context.

        It gets the context's endpoint, token scope, shared tokens, polling interval and
        tenacity retries (azure-core's own are off); ``kwargs`` add to or override them.
        """
        if not _is_client_class(client_class):
            raise TypeError(
                f"{client_class!r} is not an Azure SDK client class: pass one such as "
                "azure.mgmt.compute.ComputeManagementClient"
            )
        options: dict[str, Any] = {
            "base_url": self.resource_manager,
            "credential_scopes": [self.arm_scope],
            "retry_policy": TenacityRetryPolicy(self.retries),
        }
        if self.polling_interval is not None:
            options["polling_interval"] = self.polling_interval
        options.update(self.client_options)
        options.update(kwargs)
        if self.base_url is not None and is_loopback_url(self.base_url):
            given = options.get("per_call_policies") or []
            options["per_call_policies"] = [AllowLoopbackHttp(), *given]
        if "subscription_id" in _parameters(client_class) and "subscription_id" not in options:
            if not self.subscription_id:
                raise ValueError(
                    f"{client_class.__name__} needs a subscription: "
                    "connect_azure(subscription_id=...) or set AZURE_SUBSCRIPTION_ID"
                )
            options["subscription_id"] = self.subscription_id
        client = client_class(self.token_credential, **options)  # type: ignore[call-arg]
        origin = Origin(self, client_class, dict(kwargs))
        for value in vars(client).values():
            if type(value).__name__.endswith("Operations"):
                value._asjob_origin = origin
        return client

    def shared_client(self, client_class: type[C], **kwargs: Any) -> C:
        """One client per class (and keywords) for all the jobs of this context in a process.

        Thread jobs then share its connections, as threads calling the SDK directly share one
        client; its connection pool holds :data:`POOL_SIZE` connections, not requests' 10, so
        a hundred concurrent jobs do not open (and drop) a connection per request.
        """
        live = self._live
        assert live is not None
        key = (client_class, repr(sorted(kwargs.items())))
        with live.lock:
            client = live.clients.get(key)
            if client is None:
                kwargs.setdefault("transport", _pooled_transport())
                client = live.clients[key] = self.client(client_class, **kwargs)
        return client

    # -- copies: what a job's payload takes along (see the module docstring) ----------------

    def __getstate__(self) -> dict[str, Any]:
        live = self._live
        assert live is not None
        state = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "_live"
        }
        # Only a job's payload takes secrets along; anything else pickled (a result written to
        # the store, a user's own pickle) must hold none. Thread jobs copy no context at all.
        channel = payload_channel()
        if channel is None:  # its headers or proxies may hold keys and passwords
            state["client_options"] = {}
        if channel is Channel.NETWORK:  # a remote worker cannot reach this session: take one
            state["_tokens"] = live.brokered_tokens(self.arm_scope)
        if channel is Channel.LOCAL:  # a local worker asks this session, if it needs one
            state["_broker"] = session_broker().address(live.tokens)
            state["_credential"] = live.shippable_credential()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        tokens = state.pop("_tokens", None)
        broker = state.pop("_broker", None)
        credential = state.pop("_credential", None)
        for name, value in state.items():
            object.__setattr__(self, name, value)
        live = _Live(self.credential, authority_for(self.cloud), credential, tokens, broker)
        object.__setattr__(self, "_live", live)

    # -- saving -------------------------------------------------------------------------------

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "subscription_id": self.subscription_id,
            "tenant_id": self.tenant_id,
            "credential": self.credential.to_data(),
            "cloud": self.cloud,
            "base_url": self.base_url,
            "polling_interval": self.polling_interval,
        }
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> AzureContext:
        if not isinstance(data, Mapping):
            raise ValueError(f"an Azure context must be a mapping, not {type(data).__name__}")
        return cls(
            subscription_id=data.get("subscription_id"),
            tenant_id=data.get("tenant_id"),
            credential=CredentialReference.from_data(data.get("credential") or {}),
            cloud=data.get("cloud", "AzureCloud"),
            base_url=data.get("base_url"),
            polling_interval=data.get("polling_interval"),
        )

    @property
    def can_authenticate(self) -> bool:
        """Whether this process can get tokens with this context: it holds the credential
        object, or the reference tells how to build one. (An autosaved context of a script
        that connected with a credential object holds neither.)"""
        live = self._live
        return self.credential.rebuildable or (live is not None and live.credential is not None)

    def same_connection(self, other: AzureContext) -> bool:
        """Whether ``other`` reaches the same subscription through the same endpoint."""
        return (self.subscription_id, self.resource_manager, self.cloud) == (
            other.subscription_id,
            other.resource_manager,
            other.cloud,
        )


def _is_client_class(value: Any) -> bool:
    """Whether ``value`` is an SDK client class: a class made with a credential, that can be
    closed, as every generated Azure client is."""
    if not isinstance(value, type):
        return False
    return "credential" in _parameters(value) and callable(getattr(value, "close", None))


def _pooled_transport(*, trust_env: bool = True, **config: Any) -> RequestsTransport:
    """A transport whose pool holds :data:`POOL_SIZE` connections. ``trust_env=False`` ignores
    the proxies, ``.netrc`` and CA bundle the environment names; ``config`` is azure-core's
    transport settings (``connection_timeout``, ``read_timeout``...)."""
    session = requests.Session()
    session.trust_env = trust_env
    adapter = requests.adapters.HTTPAdapter(
        pool_maxsize=POOL_SIZE,
        # azure-core's own setting: the retry policy above decides, urllib3 never retries.
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return RequestsTransport(session=session, session_owner=True, **config)


def _parameters(client_class: type[Any]) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(client_class).parameters
    except (TypeError, ValueError):
        return {}


def connect_azure(
    subscription_id: str | None = None,
    credential: Any = None,
    tenant_id: str | None = None,
    base_url: str | None = None,
    *,
    cloud: str = "AzureCloud",
    polling_interval: float | None = None,
    retries: Retries | None = None,
    **client_options: Any,
) -> AzureContext:
    """Connect to Azure and make the connection the current context (``Connect-AzAccount``).

    ``credential`` is an azure-identity credential object (it stays in memory and reaches local
    workers only through their private payload), a :class:`CredentialReference`, or ``None`` for
    ``DefaultAzureCredential``. ``subscription_id`` defaults to ``$AZURE_SUBSCRIPTION_ID``.
    ``tenant_id`` is recorded in the context (and given to an Azure CLI credential).
    ``polling_interval`` is the seconds between polls of long-running operations when ARM sends
    no ``Retry-After``; ``retries`` the tenacity strategies for transient failures;
    ``client_options`` go to every SDK client built from the context.
    """
    subscription = subscription_id or os.environ.get("AZURE_SUBSCRIPTION_ID") or None
    if credential is None:
        reference, live_credential = CredentialReference.default(), None
    elif isinstance(credential, CredentialReference):
        reference, live_credential = credential, None
    elif isinstance(credential, type):
        raise TypeError(
            "credential must be an Azure token credential (an object with get_token), a "
            f"CredentialReference, or None; not the class {credential.__name__}: "
            f"pass an instance, e.g. {credential.__name__}()"
        )
    elif callable(getattr(credential, "get_token", None)):
        reference, live_credential = reference_of(credential), credential
    else:
        raise TypeError(
            "credential must be an Azure token credential (an object with get_token), a "
            f"CredentialReference, or None; not a {type(credential).__name__}"
        )
    if tenant_id and reference.kind == "azure_cli" and not reference.tenant_id:
        reference = dataclasses.replace(reference, tenant_id=tenant_id)
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r}: one of {', '.join(CLOUDS)}")
    context = AzureContext(
        subscription_id=subscription,
        tenant_id=tenant_id or reference.tenant_id,
        credential=reference,
        cloud=cloud,
        base_url=base_url,
        polling_interval=polling_interval,
        retries=retries or Retries(),
        client_options=dict(client_options),
        _live=_Live(reference, authority_for(cloud), live_credential),
    )
    asjob.set_context(context)
    return context
