"""Azure for asjob: Azure PowerShell's ``-AsJob`` for the Python SDK.

::

    from asjob import as_job
    from asjob.providers.azure import connect_azure
    from azure.mgmt.compute import ComputeManagementClient

    context = connect_azure(subscription_id)          # Connect-AzAccount
    compute = context.client(ComputeManagementClient)
    create = as_job(compute.virtual_machines.begin_create_or_update)
    jobs = [create("rg", f"vm{i}", parameters) for i in range(10)]
    vms = [job.receive(wait=True) for job in jobs]    # VirtualMachine, as poller.result()

A job whose call returns an ``LROPoller`` waits for it in its worker, records the poller's
status as progress and its continuation token in the store, and receives ``poller.result()``;
``asjob.resume_job(id)`` continues such a job's wait after its worker died. Requests are retried
with tenacity on transient failures only, and a 429 holds back the session's other jobs.
Stopping a job ends the local wait only: the operation goes on in Azure (see ``provider.py``).

The names below load on first use, so the local ARM emulator
(``python -m asjob.providers.azure.emulator``) starts without importing the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import AzureContext, connect_azure
    from .credentials import CredentialReference, SharedTokenCredential
    from .retries import Retries, TenacityRetryPolicy

_EXPORTS = {
    "AzureContext": "context",
    "CredentialReference": "credentials",
    "Retries": "retries",
    "SharedTokenCredential": "credentials",
    "TenacityRetryPolicy": "retries",
    "connect_azure": "context",
}

__all__ = [
    "AzureContext",
    "CredentialReference",
    "Retries",
    "SharedTokenCredential",
    "TenacityRetryPolicy",
    "connect_azure",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
