"""Bound SDK methods as data that a worker turns back into a bound method.

``compute.virtual_machines.begin_create_or_update`` does not pickle: its operations group holds
the client's HTTP pipeline. A :class:`SdkMethod` names the same thing — client class, operations
group class, method name — and the job's context travels beside it; in the worker, the method is
bound again to a client built from ``current_context()``::

    caller: compute.virtual_machines.begin_create_or_update(rg, "vm1", params)
              │ prepare_call: SdkMethod(ComputeManagementClient, VirtualMachinesOperations,
              │               "begin_create_or_update") + the client's context
    worker: current_context().client(ComputeManagementClient).virtual_machines
              .begin_create_or_update(rg, "vm1", params) ──► LROPoller ──► lro.wait

A job for a bound method uses the connection of the client it belongs to: the context that built
the client, or, for a client built directly, a context made from that client's own settings
(subscription, endpoint, polling interval, and its credential object, which travels in memory).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from azure.core.polling import LROPoller
from azure.mgmt.core.polling.arm_polling import ARMPolling

from asjob.call import signature_of
from asjob.context import current_context
from asjob.writer import active_writer

from .context import AzureContext, Origin, _Live
from .credentials import reference_of


def class_path(cls: type[Any]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def import_path(path: str) -> Any:
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Operation:
    """What a job waiting on a long-running operation knows of it (progress, resume)."""

    method: SdkMethod | None
    resource: str | None

    @property
    def activity(self) -> str:
        name = self.method.method if self.method else "long-running operation"
        return f"{name} {self.resource}" if self.resource else name


@dataclass(frozen=True)
class SdkMethod:
    """A method of an SDK client's operations group, by name; call it like the method itself.

    Called in a worker, it builds ``client_class`` from ``current_context()`` (with
    ``client_kwargs``), finds the group of class ``operations_class`` on it, and calls
    ``method``. A returned poller is tagged with the :class:`Operation` for ``lro.wait``.
    """

    client_class: str
    operations_class: str
    method: str
    client_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def __name__(self) -> str:  # what Get-Job's Command column shows
        return self.method

    def bind(self, context: AzureContext) -> Callable[..., Any]:
        client = context.shared_client(import_path(self.client_class), **self.client_kwargs)
        group_class = import_path(self.operations_class)
        for value in vars(client).values():
            if type(value) is group_class:
                method: Callable[..., Any] = getattr(value, self.method)
                return method
        raise LookupError(
            f"{self.client_class} has no operations group of class {self.operations_class}"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        method = self.bind(job_context())
        # A worker that will hand the wait to its session sends the initial request only: a
        # poll from here would be one request more, and what it saw would be lost with this
        # process. (lro.wait polls here after all if the hand-off cannot happen.)
        unpolled = "polling" not in kwargs and self.method.startswith("begin_") and hands_off()
        if unpolled:  # with the interval the SDK would poll at: the session polls at it
            interval = kwargs.get("polling_interval", _client_polling_interval(method))
            kwargs = {**kwargs, "polling": _NoPolls(interval)}
        result = method(*args, **kwargs)
        if isinstance(result, LROPoller):
            operation = Operation(self, resource_name(method, args, kwargs))
            result._asjob_operation = operation  # type: ignore[attr-defined]
            result._asjob_unpolled = unpolled  # type: ignore[attr-defined]
        return result

    def continue_from(
        self, token: str, polling_interval: float | None = None, *, polls: bool = True
    ) -> LROPoller[Any]:
        """The poller for the operation ``token`` (a continuation token) describes, polling on
        (every ``polling_interval`` seconds, if given, when the service names no wait); the
        operation is not started again. With ``polls=False`` the poller sends nothing: only
        its token and interval are wanted, by a worker that hands the wait to its session."""
        bound = self.bind(job_context())
        # Generated methods still want their required arguments; with a token they are unused
        # (the request to send is in the token), so None stands in for each.
        required = [
            p
            for p in signature_of(bound).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
        keywords: dict[str, Any] = {"continuation_token": token}
        if polling_interval is not None:
            keywords["polling_interval"] = polling_interval
        if not polls:
            interval = polling_interval
            keywords["polling"] = _NoPolls(
                _client_polling_interval(bound) if interval is None else interval
            )
        poller: LROPoller[Any] = bound(*[None] * len(required), **keywords)
        return poller


class _NoPolls(ARMPolling):
    """ARM's polling method without its polls: the poller sends the initial request, can give
    its continuation token (from which the session's poller goes on), and sends nothing more."""

    def run(self) -> None:
        return None


def _client_polling_interval(method: Callable[..., Any]) -> float:
    """The polling interval of the client ``method`` belongs to, as its ``begin_*`` takes it."""
    config = getattr(getattr(method, "__self__", None), "_config", None)
    interval = getattr(config, "polling_interval", None)
    return float(interval) if isinstance(interval, (int, float)) else 30.0


def hands_off() -> bool:
    """Whether this job's wait for an operation goes to its session (see lro.wait)."""
    writer = active_writer()
    return writer is not None and writer.can_hand_off and not writer.resume_recorded


def job_context() -> AzureContext:
    context = current_context()
    if not isinstance(context, AzureContext):
        raise TypeError(
            f"this job's context is a {type(context).__name__}, not an AzureContext: "
            "start it with context=connect_azure(...)"
        )
    return context


def is_operations_method(fn: Any) -> bool:
    """Whether ``fn`` is a method bound to an Azure SDK client's operations group."""
    owner = getattr(fn, "__self__", None)
    return (
        owner is not None
        and hasattr(owner, "_config")
        and hasattr(owner, "_client")
        and type(owner).__module__.startswith("azure.")
    )


def resource_name(
    method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    """The resource a call acts on: its last ``*_name`` argument other than the resource group
    (``vm_name`` of ``begin_create_or_update(rg, vm_name, ...)``), else the group."""
    try:
        bound = signature_of(method).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    names = [n for n in bound.arguments if n.endswith("_name") and n != "resource_group_name"]
    if names:
        return str(bound.arguments[names[-1]])
    group = bound.arguments.get("resource_group_name")
    return None if group is None else str(group)


def recipe_for(fn: Any) -> tuple[SdkMethod, AzureContext]:
    """The :class:`SdkMethod` for a bound method, and the context its job must use."""
    group = fn.__self__
    origin = getattr(group, "_asjob_origin", None)
    if origin is None:
        origin = Origin(_context_of(group), _client_class_of(group), {})
        group._asjob_origin = origin  # once per client: its jobs share one token cache
    recipe = SdkMethod(
        class_path(origin.client_class),
        class_path(type(group)),
        fn.__name__,
        origin.client_kwargs,
    )
    return recipe, origin.context


def _client_class_of(group: Any) -> type[Any]:
    # Generated clients pair ``XClient`` with ``XClientConfiguration`` in the same package.
    config = type(group._config)
    name = config.__name__.removesuffix("Configuration")
    package = config.__module__.rsplit(".", 1)[0]
    found = getattr(importlib.import_module(package), name, None)
    if not isinstance(found, type):
        raise TypeError(
            f"cannot tell which client {type(group).__qualname__} belongs to; "
            "build the client with AzureContext.client() instead"
        )
    return found


def _context_of(group: Any) -> AzureContext:
    """A context with the settings of a client that was built without one."""
    config = group._config
    credential = config.credential
    reference = reference_of(credential)
    base_url = getattr(config, "base_url", None)
    if base_url in (None, "", "https://management.azure.com", "https://management.azure.com/"):
        base_url = None
    current: AzureContext | None = None
    with contextlib.suppress(LookupError, TypeError):
        current = job_context()
    if current is not None and current.token_credential is credential:
        return current  # built with a context's credential by hand: that context
    context = AzureContext(
        subscription_id=getattr(config, "subscription_id", None),
        credential=reference,
        base_url=base_url,
        polling_interval=getattr(config, "polling_interval", None),
        _live=_Live(reference, None, credential),
    )
    return context
