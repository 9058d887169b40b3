"""Runs one job's call wherever the kind put it (a thread, a worker process) and records the
outcome in the store.

::

    Running ─► init() ─► fn(*args) ─► an async def's coroutine: run to its end (an async
                                      generator: its items, as a generator's)
                                   ─► provider.finish (an LRO: wait, poll, result)
                                        ├─ handed off: the session continues the job (Running)
                                        ├─ a generator: each item ─► output record
                                        └─ a value ─► output record + Completed  (one transaction)
               any exception ─► Failed, reason = the encoded exception (asjob.failures)

The outcome is written with a compare-and-set, so a job stopped meanwhile stays Stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, Generator, Iterator
from typing import Any

from .. import capture, context, job_threads, plugins
from .. import writer as writers
from ..call import Call, function_name
from ..errors import JobFailedError, JobNotFoundError
from ..failures import encode_failure
from ..states import JobState, transition
from ..store.base import GENERATOR, Store


def run_call(store: Store, job_id: int, call: Call, writer: writers.JobWriter) -> JobState:
    """Run ``call`` as job ``job_id``; return the state it ended in (or the state a stop set)."""
    capture.install()
    job_threads.install()
    writer.store = store
    writers.bind(writer)
    context.bind_job_context(call.context)
    try:
        outcome = _run(store, job_id, call, writer)
    except BaseException as exc:
        writer.flush()
        if transition(store, job_id, JobState.Failed, reason=encode_failure(exc)):
            return JobState.Failed
        return _state_set_elsewhere(store, job_id)
    finally:
        writer.end()
        writers.bind(None)
        context.bind_job_context(None)
    return outcome


def _run(store: Store, job_id: int, call: Call, writer: writers.JobWriter) -> JobState:
    result = None
    with _successful_exit_ends_it():
        result = call.invoke()
        if inspect.iscoroutine(result):  # an ``async def``: the job is what awaiting it gives
            result = asyncio.run(result)
        elif inspect.isasyncgen(result):
            result = _iterated(result)
        provider = plugins.provider_for_result(result)
        if provider is not None:
            result = provider.finish(result, writer, job_id)
            if result is writers.HANDED_OFF:
                writer.flush()
                return JobState.Running  # the session continues it
    if inspect.isgenerator(result):
        store.update(job_id, output_mode=GENERATOR)
        with _successful_exit_ends_it():
            for item in result:
                if writer.stopping:
                    result.close()
                    break
                writer.write_output(item)
        final: list[tuple[str, bytes]] = []
    else:
        try:
            final = [("output", writer.encode_output(result))]
        except Exception as exc:
            raise JobFailedError(
                f"job {job_id}: the result of {function_name(call.fn)} "
                f"(a {type(result).__qualname__}) cannot be sent back: {exc}",
                job_id,
                type_name=type(exc).__qualname__,
                original_message=str(exc),
            ) from None
    writer.flush()
    if transition(store, job_id, JobState.Completed, records=final):
        return JobState.Completed
    return _state_set_elsewhere(store, job_id)


@contextlib.contextmanager
def _successful_exit_ends_it() -> Iterator[None]:
    """End the job's code at a ``sys.exit()`` or ``sys.exit(0)`` in it, as its own end: the job
    Completes with what it produced (a function job's result is ``None``), as a PowerShell job
    does at ``exit`` and a script does in a shell. (A click command called in standalone mode
    exits so when it succeeds.) Any other exit status fails the job."""
    try:
        yield
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise


def _iterated(items: AsyncGenerator[Any, Any]) -> Generator[Any, None, None]:
    """An async generator's items, one by one, as a generator's (on an event loop of its own:
    a job's thread or worker runs none)."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(items.__anext__())
            except StopAsyncIteration:
                return
    finally:  # also when the job is stopped between items
        loop.run_until_complete(items.aclose())
        loop.close()


def _state_set_elsewhere(store: Store, job_id: int) -> JobState:
    """The state of a job whose outcome this run could not record: a stop got there first.
    A job removed meanwhile (a forced remove stops it first) counts as Stopped."""
    try:
        return store.get_job(job_id).state
    except JobNotFoundError:
        return JobState.Stopped


def store_sink(store: Store, job_id: int) -> writers.Sink:
    def sink(stream: str, payload: bytes) -> None:
        store.append_records(job_id, [(stream, payload)])

    return sink
