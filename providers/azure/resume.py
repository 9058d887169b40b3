"""Continuing a long-running operation from the continuation token a job recorded.

``asjob.resume_job(id)`` reads the job's ``resume_data`` (written by ``lro.wait``) and asks this
module for a call. The call, run as a new job, builds the same SDK client from the context,
and calls the same method with ``continuation_token=``: the SDK rebuilds the poller from the
token and goes on polling; the operation is not started again (no second PUT).

The connection to resume with is, in order: the ``context=`` given to ``resume_job``; this
process's current Azure context if it reaches the same subscription through the same endpoint
(it holds the live credential); else the recorded references, rebuilt here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from azure.core.polling import LROPoller

from asjob.call import Call
from asjob.context import get_context

from .context import AzureContext
from .lro import RESUME_FORMAT
from .operations import Operation, SdkMethod, hands_off


@dataclass(frozen=True)
class ContinueOperation:
    """Call ``method`` again with ``continuation_token=token``; returns the rebuilt poller."""

    method: SdkMethod
    token: str
    resource: str | None = None
    polling_interval: float | None = None

    @property
    def __name__(self) -> str:
        return self.method.method

    def __call__(self) -> LROPoller[Any]:
        # A worker that hands the wait to its session polls nothing here, as SdkMethod.__call__
        # does: a poll from here would be one request more, sent by a process about to end.
        unpolled = hands_off()
        poller = self.method.continue_from(self.token, self.polling_interval, polls=not unpolled)
        poller._asjob_operation = Operation(self.method, self.resource)  # type: ignore[attr-defined]
        poller._asjob_unpolled = unpolled  # type: ignore[attr-defined]
        return poller


def resume_call(resume_data: str, context: Any = None) -> Call:
    """The call that continues the operation ``resume_data`` describes."""
    data = json.loads(resume_data)
    if int(data.get("format", 0)) > RESUME_FORMAT:
        raise ValueError("this job was recorded by a newer asjob: upgrade asjob to resume it")
    operation = data["operation"]
    method = SdkMethod(operation["client"], operation["operations"], operation["method"])
    chosen = _context_for(data.get("context") or {}, context)
    return Call(
        ContinueOperation(
            method,
            data["continuation_token"],
            data.get("resource"),
            data.get("polling_interval"),
        ),
        context=chosen,
    )


def _context_for(saved: dict[str, Any], given: Any) -> AzureContext:
    if given is not None:
        if not isinstance(given, AzureContext):
            raise TypeError(f"context must be an AzureContext, not a {type(given).__name__}")
        return given
    recorded = AzureContext.from_data(saved)
    current = get_context()
    if (
        isinstance(current, AzureContext)
        and current.same_connection(recorded)
        and current.can_authenticate
    ):
        return current
    if not recorded.credential.rebuildable:
        raise ValueError(
            "the job connected with a credential object "
            f"({recorded.credential.type_name or 'of unknown type'}) that was held in memory "
            "only; connect_azure() with it in this process (same subscription and endpoint), "
            "or pass context=, then resume"
        )
    return recorded
