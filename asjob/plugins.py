"""Providers: SDK-specific knowledge, loaded lazily by the package an object comes from.

A provider is registered under the ``asjob.providers`` entry-point group with the name of the
top-level package it knows (``azure``). The core never imports an SDK: it asks for the provider
of a function's owner or of a returned object by that package name, and only then loads it.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .call import Call
    from .writer import JobWriter

ENTRY_POINT_GROUP = "asjob.providers"


class Provider(Protocol):
    """What a provider may contribute. Each hook returns ``None`` / its input to decline."""

    def describe_call(self, call: Call) -> tuple[str, str] | None:
        """``(default job name, job_type_name)`` for a call this provider recognises."""

    def prepare_call(self, call: Call) -> Call:
        """A version of ``call`` that can be sent to a worker (e.g. an SDK client's bound
        method replaced by a recipe that rebuilds the client from the job's context)."""

    def finish(self, result: Any, writer: JobWriter, job_id: int) -> Any:
        """Turn what the call returned into the job's result (wait for a long-running
        operation and return its outcome); return ``result`` itself to decline."""

    def context_from_data(self, data: Mapping[str, Any]) -> Any:
        """Rebuild this provider's :class:`~asjob.context.Context` from saved references."""

    def warm_up(self) -> None:
        """Run in a fork server before it forks workers: do once what every worker would
        otherwise do on its first SDK call. Must leave no thread or connection behind."""

    def resume_call(self, resume_data: str, context: Any) -> Call:
        """A call that continues the work a job recorded in ``resume_data`` (written by
        :meth:`finish` through the job's writer), with ``context`` if given (else one the
        provider picks); raise ``ValueError`` if it cannot be continued."""

    def plain_data(self, value: Any) -> Any:
        """``value`` (an object of this provider's SDK) as plain JSON-able data, as its service
        would show it (the CLI prints it); ``value`` itself to decline."""


# The lock makes the first reader of the installed distributions' metadata read it for all (a
# hundred jobs ending at once would each read it). Once read, answers come from plain variables
# without the lock: every start and every finish asks, and a lock held by a thread that waits
# for the GIL would make them all queue behind it.
_lookup_lock = threading.RLock()
_packages: frozenset[str] | None = None
_providers: dict[str, Provider | None] = {}


def provider_packages() -> frozenset[str]:
    """Names of the packages some installed provider knows (read once per process)."""
    global _packages
    if _packages is None:
        with _lookup_lock:
            if _packages is None:
                _packages = _read_provider_packages()
    return _packages


def _read_provider_packages() -> frozenset[str]:
    return frozenset(e.name for e in metadata.entry_points(group=ENTRY_POINT_GROUP))


def warm_up_imported_providers() -> None:
    """In a fork server: load the providers of packages this process has imported, and let
    each warm up, so that the workers forked next find them loaded (instead of each reading
    every installed distribution's entry points) and their SDK's first-call costs paid. A
    provider whose package is not in use is left alone: loading it would import its SDK."""
    for package in provider_packages():
        if package not in sys.modules:
            continue
        try:
            provider = provider_named(package)
            if provider is not None:
                provider.warm_up()
        except Exception:  # warming up only saves work; the job meets any real problem
            continue


def provider_named(package: str) -> Provider | None:
    """The provider registered under ``package`` (``ImportError`` if its SDK is missing)."""
    if package not in provider_packages():
        return None
    if package not in _providers:
        with _lookup_lock:
            if package not in _providers:
                _providers[package] = _load_provider(package)
    return _providers[package]


def _load_provider(package: str) -> Provider | None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == package:
            factory = entry.load()
            provider: Provider = factory()
            return provider
    return None


def _package_of(obj: Any) -> str:
    module = getattr(type(obj), "__module__", "") or ""
    return module.split(".", 1)[0]


def provider_for_call(call: Call) -> Provider | None:
    owner = getattr(call.fn, "__self__", None)
    if owner is None:
        return None
    return provider_named(_package_of(owner))


def provider_for_result(result: Any) -> Provider | None:
    package = _package_of(result)
    if package not in provider_packages():
        return None
    return provider_named(package)


def plain_data(value: Any) -> Any:
    """``value`` as plain data if the provider of its package offers a form (see
    :meth:`Provider.plain_data`), else ``value`` itself."""
    try:
        provider = provider_for_result(value)
    except ImportError:
        return value
    return value if provider is None else provider.plain_data(value)


def resume_provider_name(resume_data: str | None) -> str:
    """The provider that recorded ``resume_data`` ("" if none did: a kind may keep its own
    routing there too, the dask kind its scheduler address)."""
    return str(json.loads(resume_data or "{}").get("provider", ""))


def continuation_call(resume_data: str, context: Any) -> Call:
    """The call that continues a job whose worker handed it off with ``resume_data``."""
    name = resume_provider_name(resume_data)
    provider = provider_named(name) if name else None
    if provider is None:
        raise ValueError(f"no provider {name!r} to continue this job with")
    return provider.resume_call(resume_data, context)
