"""The Dask task of a ``dask`` job: on a Dask worker, it runs the call in a process of its own.

::

    session ──submit(run_job)──► worker thread: run_job
                                   ├─ claim: take the job's Dask MultiLock, unless it is taken
                                   ├─ meanwhile: a job process kept ready (asjob.worker.
                                   │  dask_spawner) gets the job and prepares it
                                   ├─ ("go",) ──► the job process runs the call
                                   ├─ its messages; every FLUSH_S an interim batch ──► channel
                                   └─ its last message (or its end) ──► the final batch:
                                        last messages + exit status
                                        ├─► channel, when the session's inbox (it settles there)
                                        └─► the task's result
    stop_job ──Client.run(kill_job)──► the worker's event loop: SIGKILL the job's process group,
                                       return once it has been reaped

Dask cannot interrupt a running task, hence the separate process: killing it ends the job and
the worker goes on serving. Dask also runs a task again when its worker dies; for a job (a VM
creation, say) that would repeat the call, so the claim turns such a re-run into a report that
the job was lost. A task cancelled on the worker (its session ended) kills its job process too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import pickle
import select
import socket
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from ..failures import encode_failure
from . import protocol
from .dask_protocol import (
    EXITED,
    GO,
    HELLO,
    JOB,
    LOST,
    MODULES,
    NOT_RUN,
    OUTCOME,
    STARTED,
    STOPPED,
    Message,
    RemoteCall,
    encode_batch,
    encode_result,
)
from .dask_spawner import fork_server
from .forking import kill_tree

FLUSH_S = 0.05
# A final batch larger than this is left to the task's result: the inbox goes through the
# scheduler, which should not hold large values for long.
FINAL_TO_CHANNEL_LIMIT = 1 << 20
START_WAIT_S = 30.0
KILL_WAIT_S = 5.0
_MAX_DOOMED = 10_000

_lock = threading.Lock()
_running: dict[str, int] = {}  # instance id -> pid of the job's process
# Jobs a stop reached before they began here: their task must not start them afterwards.
_doomed: OrderedDict[str, None] = OrderedDict()


def run_job(spec_data: bytes) -> bytes:
    """The task: run the job described by ``spec_data``; return its final batch.

    Never raises: Dask logs a failed task's arguments, and these carry the call and its context.
    """
    try:
        spec: RemoteCall = pickle.loads(spec_data)
        return _run(spec)
    except BaseException as exc:  # reported as the job's failure, see above
        return _failed(exc)


def _failed(exc: BaseException) -> bytes:
    return encode_result(0, [(OUTCOME, "Failed", {"reason": encode_failure(exc)}, [])])


def _run(spec: RemoteCall) -> bytes:
    from distributed import get_worker

    worker = get_worker()
    key = worker.get_current_task()
    with _lock:
        if spec.instance in _doomed:
            return encode_result(0, [(NOT_RUN, STOPPED)])
    lock_id = f"{spec.instance}:{uuid.uuid4().hex}"
    claim = _claim(worker, spec.claim, lock_id)  # asked now, answered while the process readies
    child = fork_server().take()
    ours = child.sock
    try:
        reader = protocol.Reader(ours)
        pid = _hello(ours, reader)
        if pid is not None:
            protocol.send(ours, (JOB, spec))
        claimed = bool(claim.result(START_WAIT_S))
        if pid is None:
            if claimed:
                _release(worker, lock_id)
            child.exited.wait(KILL_WAIT_S)
            return _failed(OSError(child.error or "the fork server did not start the job"))
        with _lock:
            doomed = spec.instance in _doomed
            _running[spec.instance] = pid
        try:
            if doomed or not claimed:
                kill_tree(pid)
                child.exited.wait(KILL_WAIT_S)
                if claimed:
                    _release(worker, lock_id)
                return encode_result(0, [(NOT_RUN, STOPPED if doomed else LOST)])
            protocol.send(ours, (GO,))
            return _supervise(worker, key, spec, ours, reader, pid, child, lock_id)
        except BaseException:
            kill_tree(pid)
            raise
        finally:
            with _lock:
                _running.pop(spec.instance, None)
    finally:
        ours.close()
        fork_server().refill()  # now that the job has ended: see Spawner.refill


def _hello(sock: socket.socket, reader: protocol.Reader) -> int | None:
    """The job process's pid, from its first message (``None``: it never came)."""
    deadline = time.monotonic() + START_WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            frames = _receive(reader)
            if frames is None:
                return None  # the fork server closed it: no process took the job
            if frames:
                assert frames[0][0] == HELLO and len(frames) == 1
                return int(frames[0][1])
    return None


def _supervise(
    worker: Any,
    key: Any,
    spec: RemoteCall,
    sock: socket.socket,
    reader: protocol.Reader,
    pid: int,
    child: Any,
    lock_id: str,
) -> bytes:
    pending: list[Message] = [(STARTED, worker.address, pid, lock_id)]
    sent = 0
    next_flush = time.monotonic() + FLUSH_S
    abandoned = False
    while True:
        readable, _, _ = select.select([sock], [], [], max(0.0, next_flush - time.monotonic()))
        if readable:
            frames = _receive(reader)
            if frames is None:
                break  # the job process has ended, closing its end
            pending.extend(_take_modules(frames))
            if any(frame[0] == MODULES for frame in frames):
                break  # its last message: the call has returned and everything is here
        if time.monotonic() >= next_flush:
            next_flush = time.monotonic() + FLUSH_S
            if not abandoned and _cancelled(worker, key):
                abandoned = True  # its session is gone (or it was cancelled): nobody will
                kill_tree(pid)  # read its result, and Dask will not run it again
            if child.exited.is_set():
                # Ended, but a process it forked still holds its end: take what is there.
                sock.setblocking(False)
                while (frames := _receive(reader)) is not None:
                    pending.extend(_take_modules(frames))
                break
            # Interim batches never include the outcome: that belongs to the final one.
            cut = next((i for i, m in enumerate(pending) if m[0] == OUTCOME), len(pending))
            if cut and _put(
                worker, spec.channel, encode_batch(spec.instance, sent + 1, pending[:cut])
            ):
                sent += 1
                del pending[:cut]
    if not any(m[0] == OUTCOME for m in pending):
        child.exited.wait(KILL_WAIT_S)  # how it ended is the job's outcome: wait to learn it
    if abandoned:
        _release(worker, lock_id)  # the session that would have released the claim is gone
    final = [*pending, (EXITED, pid, child.status, lock_id)]
    if spec.final_to_channel and not abandoned:
        batch = encode_batch(spec.instance, sent + 1, final, final=True)
        if len(batch) <= FINAL_TO_CHANNEL_LIMIT:
            # Put (and acknowledged) before the task returns, so it is ahead of the task's end.
            _put(worker, spec.channel, batch)
    return encode_result(sent, final)


def _receive(reader: protocol.Reader) -> list[Message] | None:
    try:
        return reader.receive()
    except OSError:  # includes BlockingIOError once a non-blocking socket is drained
        return None


def _take_modules(frames: list[Message]) -> list[Message]:
    """The frames for the session; what the job imported goes to the fork server."""
    for frame in frames:
        if frame[0] == MODULES and frame[1]:
            fork_server().preload(frame[1])
    return [f for f in frames if f[0] != MODULES]


def _claim(worker: Any, name: str, lock_id: str) -> concurrent.futures.Future[bool]:
    """Take the job's claim; the answer is ``False`` if a run before this one (on a worker
    since lost) had taken it. A MultiLock is the one scheduler primitive that tests and takes
    in a single request."""

    async def acquire() -> bool:
        taken = await worker.scheduler.multi_lock_acquire(
            locks=[name], id=lock_id, timeout=0, num_locks=1
        )
        return bool(taken)

    return asyncio.run_coroutine_threadsafe(acquire(), worker.loop.asyncio_loop)


def _release(worker: Any, lock_id: str) -> None:
    from distributed.utils import sync

    with contextlib.suppress(Exception):  # a claim left held only stops a re-run
        sync(worker.loop, worker.scheduler.multi_lock_release, id=lock_id)


def _put(worker: Any, channel: str, data: bytes) -> bool:
    from distributed.utils import sync

    try:
        sync(worker.loop, worker.scheduler.queue_put, name=channel, data=data)
    except Exception:  # the session is gone: keep the batch for the result
        return False
    return True


def _cancelled(worker: Any, key: Any) -> bool:
    task = worker.state.tasks.get(key)
    return task is None or task.state == "cancelled"


async def kill_job(instance: str) -> bool:
    """Stop a job on this worker (run here by ``Client.run``, on the worker's event loop).

    Kills the job's process group and returns once the process is reaped; ``True`` if it was
    running here. Either way the job can no longer begin on this worker.
    """
    with _lock:
        _doomed[instance] = None
        while len(_doomed) > _MAX_DOOMED:
            _doomed.popitem(last=False)
        pid = _running.get(instance)
    if pid is None:
        return False
    kill_tree(pid)
    deadline = time.monotonic() + KILL_WAIT_S
    while instance in _running and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    return True
