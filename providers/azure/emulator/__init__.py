"""A local Azure Resource Manager endpoint for the Compute virtual-machine operations.

The real, unmodified azure-mgmt-compute SDK runs against it offline::

    with ArmEmulator(operation_seconds=0.2) as arm:
        # IDENTITY_ENDPOINT=arm.identity_endpoint, IDENTITY_HEADER=x for DefaultAzureCredential
        client = ComputeManagementClient(credential, subscription_id, base_url=arm.base_url)

It speaks the long-running-operation protocol the SDK expects (``Azure-AsyncOperation`` and
``Location`` headers, operation status polls, keyset paging), issues bearer tokens through the
App Service managed-identity route, and injects faults on request. ``python -m
asjob.providers.azure.emulator`` runs it as a process.
"""

from .emulator import ArmEmulator, loopback_host
from .faults import FailureRule, Fault
from .requestlog import RequestRecord
from .resources import OPERATION_SECONDS_TAG
from .state import Settings

__all__ = [
    "OPERATION_SECONDS_TAG",
    "ArmEmulator",
    "FailureRule",
    "Fault",
    "RequestRecord",
    "Settings",
    "loopback_host",
]
