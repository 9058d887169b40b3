"""Retries with tenacity, for every ARM request (initial requests and polls alike), and the one
place where failures are classified as transient or permanent.

azure-core retries each request itself (``RetryPolicy``: up to 4 attempts), and a library that
also retried the operation around it would multiply the two. So clients built from an
:class:`~asjob.providers.azure.AzureContext` get :class:`TenacityRetryPolicy` *instead* of
azure-core's: one layer, driven by tenacity strategies, sitting where azure-core's would::

    SDK call / LRO poll ──► ... ──► TenacityRetryPolicy ──► auth ──► transport ──► ARM
                                     │ wait while the subscription is held back (a 429 seen by
                                     │   any job of the session holds back all of them)
                                     │ transient (408, 429, 5xx, connection) → wait, try again
                                     └ permanent (400, 401, 403, 404, 409, ...) → the response
                                       goes back at once: the SDK raises its own exception type

``Retry-After`` (or ``retry-after-ms``) is honoured as the wait. A failed long-running operation
is a 200 poll whose body says ``Failed``: not an HTTP failure, so never retried.

Every wait here (between attempts, for a hold) ends early when the job the request works for is
asked to stop, raising :class:`JobStopped` instead of sending again: a stopped thread job's
thread is abandoned, not killed, and would otherwise create the VM after its Stop-Job. The job
is the current job of the thread (``current_job()``), or, for a poller's own thread, the one
:func:`works_for` named.
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import tenacity
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from tenacity import RetryCallState
from tenacity.stop import StopBaseT, stop_after_attempt, stop_after_delay
from tenacity.wait import WaitBaseT, wait_exponential_jitter

from asjob import writer as writers

# 501 Not Implemented and 505 HTTP Version Not Supported will not change on a retry.
_PERMANENT_5XX = frozenset({501, 505})
# A request that was sent but got no answer may have been applied: retry only what is idempotent.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_SUBSCRIPTION = re.compile(r"/subscriptions/([^/?#]+)", re.IGNORECASE)


# -- classification (the one place) ------------------------------------------------------------


def is_transient_status(status: int) -> bool:
    """408, 429 and 5xx (but 501, 505) may succeed on a retry; everything else is final."""
    return status in (408, 429) or (500 <= status <= 599 and status not in _PERMANENT_5XX)


def is_transient_error(error: BaseException, method: str = "GET") -> bool:
    """A connection failure: not sent (always retried), or sent without an answer (retried for
    idempotent methods only)."""
    if isinstance(error, ServiceRequestError):
        return True
    return isinstance(error, ServiceResponseError) and method.upper() in _IDEMPOTENT


def retry_after(response: Any) -> float | None:
    """The wait a response asks for (``retry-after-ms``, ``x-ms-retry-after-ms``, then
    ``Retry-After`` in seconds or as an HTTP date), or ``None``."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


# -- waits that end at a stop -------------------------------------------------------------------


class JobStopped(Exception):
    """Ends the requests of a job that was asked to stop, in place of their next attempt or
    poll (the job is already Stopped: nobody reads this)."""


# Threads that work for a job without being its thread (an LROPoller's): a stop sets the event.
_thread_stops: weakref.WeakKeyDictionary[threading.Thread, threading.Event] = (
    weakref.WeakKeyDictionary()
)
_thread_stops_lock = threading.Lock()
# Poller threads whose job no longer needs them (see release).
_released: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def _stop_event(thread: threading.Thread) -> threading.Event:
    with _thread_stops_lock:
        event = _thread_stops.get(thread)
        if event is None:
            event = _thread_stops[thread] = threading.Event()
        return event


def works_for(thread: threading.Thread, writer: writers.JobWriter) -> None:
    """Make ``thread`` (a poller's thread, which the job's context variables do not reach) end
    its waits when ``writer``'s job is asked to stop, including a wait it is already in."""
    writer.on_stop(_stop_event(thread).set)


def release(thread: threading.Thread) -> None:
    """Make ``thread`` (a poller's thread) end at its next request or pause, whatever its job
    does: the job's session takes the polling over."""
    _released.add(thread)
    _stop_event(thread).set()  # a pause it is in ends too


def stopping() -> bool:
    """Whether the job this thread works for has been asked to stop (or no longer needs it)."""
    if _released and threading.current_thread() in _released:
        return True
    writer = writers.active_writer()
    if writer is not None:
        return writer.stopping
    # No lock, and no event made for a thread no job named: every request of every thread asks.
    event = _thread_stops.get(threading.current_thread())
    return event is not None and event.is_set()


def pause(seconds: float) -> None:
    """Sleep ``seconds``, or raise :class:`JobStopped` as soon as the job this thread works for
    is asked to stop (at once if it already was)."""
    writer = writers.active_writer()
    stopped = (
        writer.wait_for_stop(seconds)
        if writer is not None and threading.current_thread() not in _released
        else _stop_event(threading.current_thread()).wait(seconds)
    )
    if stopped:
        raise JobStopped("the job was stopped")


# -- the policy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retries:
    """How ARM requests are retried: tenacity ``stop`` and ``wait`` strategies.

    ``Retry-After`` always wins over ``wait`` when a response names one. ``hold_back=False``
    stops a 429 of one job from holding back the session's other jobs.
    """

    stop: StopBaseT = field(default_factory=lambda: stop_after_attempt(8) | stop_after_delay(600))
    wait: WaitBaseT = field(default_factory=lambda: wait_exponential_jitter(initial=1, max=60))
    hold_back: bool = True


class _WaitRetryAfter:
    """Wait what the response asked for, else what the configured strategy says."""

    def __init__(self, fallback: WaitBaseT) -> None:
        self._fallback = fallback

    def __call__(self, state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            asked = retry_after(outcome.result().http_response)
            if asked is not None:
                return asked
        return float(self._fallback(state))


def _last_outcome(state: RetryCallState) -> Any:
    # Out of attempts: hand back the last response (the SDK raises its own error for it) or
    # re-raise the last exception, rather than tenacity's RetryError.
    assert state.outcome is not None
    return state.outcome.result()


class TenacityRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's retry slot, filled by tenacity (azure-core's own retries are off)."""

    def __init__(self, retries: Retries | None = None) -> None:
        super().__init__(retry_total=0)
        self.retries = retries or Retries()

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        method = request.http_request.method
        key = hold_key(request.http_request.url)

        def transient_result(response: PipelineResponse[Any, Any]) -> bool:
            return is_transient_status(response.http_response.status_code)

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            if (
                self.retries.hold_back
                and outcome is not None
                and not outcome.failed
                and outcome.result().http_response.status_code == 429
            ):
                until = time.time() + (state.upcoming_sleep or 0.0)
                hold(key, until)

        retrying = tenacity.Retrying(
            stop=self.retries.stop,
            wait=_WaitRetryAfter(self.retries.wait),
            retry=(
                tenacity.retry_if_result(transient_result)
                | tenacity.retry_if_exception(lambda e: is_transient_error(e, method))
            ),
            before_sleep=before_sleep,
            retry_error_callback=_last_outcome,
            sleep=pause,
        )
        response: PipelineResponse[Any, Any] = retrying(self._attempt, request, key)
        return response

    def _attempt(self, request: PipelineRequest[Any], key: str) -> PipelineResponse[Any, Any]:
        if self.retries.hold_back:
            wait_for_hold(key)
        if stopping():  # asked to stop between its waits: send nothing more
            raise JobStopped("the job was stopped")
        return self.next.send(request)


# -- holds: a 429 of one job paces every job of the session --------------------------------------

_local_holds: dict[str, float] = {}
_local_lock = threading.Lock()


def hold_key(url: str) -> str:
    """What a 429 holds back: the subscription a request is for (else its host)."""
    found = _SUBSCRIPTION.search(url)
    if found:
        return f"azure:subscription:{found.group(1).lower()}"
    return "azure:host:" + url.split("//", 1)[-1].split("/", 1)[0].lower()


def _job_store() -> Any:
    # Inside a job (a worker process, or a thread of the session, which also continues the
    # waits its workers hand off) the job store carries holds between the session's
    # processes; outside a job this process's own table is all there is.
    writer = writers.active_writer()
    return None if writer is None else writer.store


def hold(key: str, until: float) -> None:
    """Hold ``key`` back until ``until`` (POSIX time), here and for the session's workers."""
    with _local_lock:
        _local_holds[key] = max(until, _local_holds.get(key, until))
    store = _job_store()
    if store is not None and hasattr(store, "hold"):
        store.hold(key, until)


def held_until(key: str) -> float | None:
    with _local_lock:
        local = _local_holds.get(key)
    store = _job_store()
    shared = store.held_until(key) if store is not None and hasattr(store, "held_until") else None
    until = max((u for u in (local, shared) if u is not None), default=None)
    return until if until is not None and until > time.time() else None


def wait_for_hold(key: str) -> None:
    """Sleep until ``key`` is no longer held (a hold extended meanwhile is waited out too), or
    raise :class:`JobStopped` when the job this thread works for is asked to stop."""
    while True:
        until = held_until(key)
        if until is None:
            return
        pause(max(0.0, until - time.time()))
