"""The Azure provider: what asjob knows about Azure SDK calls (entry point ``azure``).

asjob loads it lazily, only when a job's call is a method of an ``azure.*`` object or returns
one, or when a saved context or a job's resume data names it::

    start:  describe_call  begin_* method ──► name "Long Running Operation for 'begin_x' on
                                              resource 'vm1'", type AzureLongRunningJob
            prepare_call   bound SDK method ──► SdkMethod recipe + the client's context
    worker: finish         LROPoller ──► lro.wait: progress, continuation token, result()
                                         (or, in a process job's worker: hand off to the
                                         session, which continues it with resume_call)
                           ItemPaged ──► list (a pager cannot travel back)
    later:  resume_call    resume_data ──► a call that continues the operation (resume.py)
            context_from_data  a saved context ──► AzureContext

Stopping an Azure long-running-operation job ends the local wait only: the operation itself is
not cancelled and goes on in Azure, exactly as with ``Stop-Job`` on an Azure PowerShell
``-AsJob`` job. To undo it, run the opposite operation (e.g. ``begin_delete``) when it ends.
``resume_job`` can pick a stopped wait up again.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from azure.core.paging import ItemPaged
from azure.core.polling import LROPoller

from asjob.call import Call
from asjob.writer import JobWriter

from . import lro, resume, warm_up
from .context import AzureContext
from .operations import is_operations_method, recipe_for, resource_name


class AzureProvider:
    """The hooks of :class:`asjob.plugins.Provider` for the Azure SDK."""

    def describe_call(self, call: Call) -> tuple[str, str] | None:
        fn = call.fn
        name = getattr(fn, "__name__", "")
        if not (is_operations_method(fn) and name.startswith("begin_")):
            return None
        resource = resource_name(fn, call.args, call.kwargs)
        on = f" on resource '{resource}'" if resource else ""
        return f"Long Running Operation for '{name}'{on}", lro.JOB_TYPE_NAME

    def prepare_call(self, call: Call) -> Call:
        if not is_operations_method(call.fn):
            return call
        recipe, context = recipe_for(call.fn)
        return dataclasses.replace(call, fn=recipe, context=context)

    def finish(self, result: Any, writer: JobWriter, job_id: int) -> Any:
        if isinstance(result, LROPoller):
            return lro.wait(result, writer, job_id)
        if isinstance(result, ItemPaged):
            return list(result)
        return result

    def warm_up(self) -> None:
        if "azure.mgmt.compute" in sys.modules:  # never import an SDK the caller does not use
            warm_up.rehearse()

    def plain_data(self, value: Any) -> Any:
        # Azure SDK models (both generations) give their REST form, the JSON ARM returns.
        as_dict = getattr(value, "as_dict", None)
        return as_dict() if callable(as_dict) else value

    def context_from_data(self, data: Mapping[str, Any]) -> AzureContext:
        return AzureContext.from_data(data)

    def resume_call(self, resume_data: str, context: Any) -> Call:
        return resume.resume_call(resume_data, context)
