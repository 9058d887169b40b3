"""Waiting on a long-running operation inside a job, as Azure PowerShell's ``-AsJob`` does.

::

    LROPoller (polling in its own thread)
       │ continuation token ──► the job's resume_data (with the operation and the context's
       │                         references), so resume_job can pick the wait up elsewhere
       │ in a worker process whose session waits for it (a process job, not detached): the
       │   worker hands the job off and ends there; the session continues the same job from
       │   that resume_data in a thread, with the job's context (see JobWriter.hand_off). A
       │   decorated SDK method there sends its initial request only (SdkMethod.__call__); a
       │   poller a function returned has its polling ended first (what it saw is kept)
       │ status() changes   ──► progress records while it runs, written from the poller's
       │                         pauses between polls: "begin_create_or_update vm1: InProgress"
       ▼ done                    (the job's thread only waits: for the end, or for a stop)
    poller.result() ──► the job's result: the finished model (or the SDK's exception)

A stop ends this wait only: the operation itself goes on in Azure, as with Stop-Job on an
Azure PowerShell job. It also ends the poller's thread at its next pause, or in a retry's wait
(``retries.works_for``): a stopped thread job's thread is abandoned, not killed, and its poller
would otherwise go on polling. Nothing is written to a stopped job's record.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Callable
from typing import Any

from azure.core.polling import LROPoller

from asjob.context import current_context
from asjob.states import JobState
from asjob.writer import JobWriter

from . import retries
from .context import AzureContext
from .operations import Operation, SdkMethod, class_path

JOB_TYPE_NAME = "AzureLongRunningJob"
RESUME_FORMAT = 1
# How often the job looks at the status of a poller whose pauses it cannot hook (a local read,
# no request). Not more often: a hundred job threads waking ten times a second would fight
# over the GIL.
STATUS_CHECK_S = 0.5
# How long a worker waits for its poller's thread to end before it hands the wait off.
RELEASE_WAIT_S = 0.5
# Statuses of an operation that has ended (azure-core's, in lower case).
_TERMINAL = frozenset({"succeeded", "failed", "canceled", "cancelled"})


def wait(poller: LROPoller[Any], writer: JobWriter, job_id: int) -> Any:
    """Wait for ``poller`` in the job ``job_id``; return ``poller.result()``, or hand the
    wait off to the job's session (a worker process whose session waits for it)."""
    thread = getattr(poller, "_thread", None)  # None: the poller was done at once
    if isinstance(thread, threading.Thread):
        retries.works_for(thread, writer)
    if writer.stopping:  # stopped while the operation was being started
        return None
    operation: Operation | None = getattr(poller, "_asjob_operation", None)
    fields: dict[str, Any] = {}
    if operation is None:  # a function returned the poller: describe_call never saw it
        operation = operation_of(poller)
        fields["job_type_name"] = JOB_TYPE_NAME
    unpolled = bool(getattr(poller, "_asjob_unpolled", False))  # see SdkMethod.__call__
    if (unpolled or not poller.done()) and not writer.resume_recorded:
        data = resume_data(poller, operation)
        if data is not None:
            if writer.can_hand_off and (unpolled or _nothing_seen_yet(poller)):
                # Only polls are left: a thread of the session does them for a fraction of
                # what this process costs, with the connection the session already has.
                return writer.hand_off(data, **fields)
            fields["resume_data"] = data
    if unpolled and operation.method is not None:  # no hand-off after all: poll here
        poller = operation.method.continue_from(
            poller.continuation_token(), polling_interval=polling_interval(poller)
        )
        thread = getattr(poller, "_thread", None)
        if isinstance(thread, threading.Thread):
            retries.works_for(thread, writer)
    if fields:
        record_while_running(writer, job_id, fields)

    # Progress while the operation runs; its end is the job's own state (one store write less
    # per job, which a hundred concurrent jobs feel).
    progress = _StatusProgress(poller, writer, operation.activity)
    done = threading.Event()
    poller.add_done_callback(lambda _method: done.set())
    hooked = hook_pauses(poller, writer, progress.report)
    progress.report()
    if hooked:
        # The poller reports each status after the poll that saw it, and ends at a stop: this
        # thread only waits, and wakes once, for the end or for a stop.
        writer.on_stop(done.set)
        done.wait()
    else:
        while not done.wait(STATUS_CHECK_S) and not writer.stopping:
            progress.report()
    if writer.stopping:
        return None  # the wait ends; the operation goes on in Azure
    return poller.result()


def _nothing_seen_yet(poller: LROPoller[Any]) -> bool:
    """End the poller's own polling, and say whether it ended without seeing the operation
    end: a poll it sent just before may have, and that is then the job's outcome (a hand-off
    would lose it). A poller in a pause ends at its next request; waiting longer for it would
    keep this process for nothing."""
    thread = getattr(poller, "_thread", None)
    if not isinstance(thread, threading.Thread):
        return not poller.done()
    retries.release(thread)
    thread.join(RELEASE_WAIT_S)
    return thread.is_alive() or str(poller.status()).lower() not in _TERMINAL


def record_while_running(writer: JobWriter, job_id: int, fields: dict[str, Any]) -> bool:
    """Write ``fields`` to the job's record if it is still Running; return whether it was.

    A stop can come at any moment, and a Stopped job's record must not change afterwards (its
    resume data would make ``resume_job`` continue an operation the user stopped waiting for):
    the check and the write are one compare-and-set, which leaves the state as it is.
    """
    if writer.store is None:
        return False
    running = frozenset({JobState.Running})
    return writer.store.compare_and_set_state(job_id, running, JobState.Running, **fields)


class _StatusProgress:
    """Writes a progress record each time the poller's status differs from the last one
    written. Called from the job's thread and from the poller's own."""

    def __init__(self, poller: LROPoller[Any], writer: JobWriter, activity: str) -> None:
        self._poller = poller
        self._writer = writer
        self._activity = activity
        self._reported: str | None = None
        self._lock = threading.Lock()

    def report(self) -> None:
        with self._lock:
            status = self._poller.status()
            if status != self._reported and not self._poller.done():
                self._reported = status
                self._writer.write_progress(self._activity, status)


def hook_pauses(poller: LROPoller[Any], writer: JobWriter, on_pause: Callable[[], None]) -> bool:
    """Make the poller call ``on_pause`` at each pause between its polls, and end its thread at
    its next pause once the job is asked to stop. Returns whether it could.

    The poller polls in a thread of its own that nothing can interrupt, so a stopped job's
    poller would go on sending a request every polling interval until the operation ends.
    azure-core's polling methods pause through ``_sleep``; this one reports, then waits for the
    delay or a stop, and ends the polling loop by raising :class:`~.retries.JobStopped` at a
    stop (the poller keeps the exception, unread). A polling method without ``_sleep`` is left
    as it is.
    """
    method = poller.polling_method()
    if not callable(getattr(method, "_sleep", None)):
        return False

    def sleep(delay: float) -> None:
        on_pause()
        if writer.wait_for_stop(delay):
            raise retries.JobStopped("the job was stopped")

    method._sleep = sleep  # type: ignore[attr-defined]
    return True


def resume_data(poller: LROPoller[Any], operation: Operation) -> str | None:
    """What ``resume_job`` needs to continue the wait: no secret (the continuation token holds
    the initial request's method, URL and id header and the initial response's body and LRO
    headers; the context is references only)."""
    if operation.method is None:
        return None
    try:
        context = current_context()
        token = poller.continuation_token()
    except Exception:  # no context, or a poller that cannot make a token
        return None
    if not isinstance(context, AzureContext):
        return None
    method = operation.method
    return json.dumps(
        {
            "provider": "azure",
            "format": RESUME_FORMAT,
            "operation": {
                "client": method.client_class,
                "operations": method.operations_class,
                "method": method.method,
            },
            "resource": operation.resource,
            "continuation_token": token,
            # Not in the token, and a resumed poller would take the client's (see ARM.md).
            "polling_interval": polling_interval(poller),
            "context": context.to_data(),
        }
    )


def polling_interval(poller: LROPoller[Any]) -> float | None:
    """The seconds ``poller`` waits between polls when the service names no wait (the call's
    ``polling_interval``, else its client's); ``None`` if its polling method does not say."""
    interval = getattr(poller.polling_method(), "_timeout", None)
    return float(interval) if isinstance(interval, (int, float)) else None


def operation_of(poller: LROPoller[Any]) -> Operation:
    """What can be learnt of a poller a function returned: the generated SDK method that made
    it (from its result callback, ``XOperations.begin_y.<locals>.get_long_running_output``) and
    the resource (the last segment of the initial request's URL)."""
    polling = poller.polling_method()
    callback = getattr(polling, "_deserialization_callback", None)
    qualname = str(getattr(callback, "__qualname__", "")).split(".<locals>.")[0]
    module = str(getattr(callback, "__module__", ""))
    method: SdkMethod | None = None
    parts = qualname.split(".")
    if len(parts) == 2 and ".operations" in module:
        try:
            group_class = getattr(importlib.import_module(module), parts[0])
            client_class = _client_class_in(module.split(".operations")[0])
            method = SdkMethod(class_path(client_class), class_path(group_class), parts[1])
        except Exception:  # not a generated SDK method: no resume, still a wait
            method = None
    return Operation(method, _resource_of(polling))


def _client_class_in(package: str) -> type[Any]:
    module = importlib.import_module(package)
    for name in getattr(module, "__all__", dir(module)):
        found = getattr(module, name, None)
        if isinstance(found, type) and name.endswith("Client"):
            return found
    raise LookupError(f"no client class in {package}")


def _resource_of(polling: Any) -> str | None:
    try:
        url = str(polling._initial_response.http_response.request.url)
    except AttributeError:
        return None
    return url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None
