"""The ``dask`` kind's work for one session: connections, the jobs it watches, their ends.

::

    launch ── Running (location: the scheduler) ── submit ── watch   (detached: + own queue,
                                                                       task published by name)
    inbox thread ── on_batch ── watch.offer ── store     (location becomes the worker's)
                           └─ the final batch ── settle: one compare-and-set
                                                 ── session.job_finished
    result thread ── on_done ── not settled yet? the task's result, interim batches applied?
                                 ── settle ── session.job_finished
                            └─ clean up on the cluster (the claim, a detached job's queue)
    stop ── Client.run(kill_job) where it runs (every worker if it has not begun)
           ── cancel the task if it ran nowhere ── wait for its end
           (a scheduler that does not answer in ANSWER_WAIT_S: BackendUnavailableError)
    remove-worker event ── the jobs whose tasks it ran: Failed (WorkerLostError), tasks
                           cancelled (Dask would run them again)
    task cancelled, not by a stop (the scheduler lost) ── Failed; a detached job is left to
                           be adopted again
    adopt ── a detached job whose starter is gone: fetch its published task, watch it

A job's record says which scheduler it went to (:mod:`.routing`), so any process sharing the
store can stop it or, once its starter has exited, collect a detached job's result.

A job is settled once, from whichever comes first: its final batch in the inbox (the usual
way for a job that is not detached) or its task's end. Its claim is released only after the
task has ended: released earlier, a worker lost in between would let Dask's re-run take it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil
from distributed import Future
from distributed.scheduler import KilledWorker

from ...errors import AsJobError, BackendUnavailableError, InvalidJobStateError, WorkerLostError
from ...failures import encode_failure
from ...states import JobState, transition
from ...store.base import JobRecord
from ...worker import dask_protocol as p
from ..base import LaunchOptions
from ..process import process_gone
from . import routing
from .cluster import Cluster, NoAnswer, cancel_reason, task_outcome
from .outcome import settle, settle_cancelled, settle_failure
from .watch import JobWatch

if TYPE_CHECKING:
    from ...session import Session

STOP_WAIT_S = 5.0
SETTLE_WAIT_S = 5.0
ADOPT_RETRY_S = 5.0
# How long adopting a job waits to learn whether its task has ended already.
ADOPT_LOOK_S = 0.5
# How long a lost worker's jobs are given for their last batches to arrive before they are
# failed: a job that ended just before its worker left has its outcome on the way.
WORKER_LOST_GRACE_S = 1.0


@dataclass(frozen=True)
class PreparedCall:
    address: str
    payload: bytes
    log_levels: dict[str, int]


class _NotAnswering(BackendUnavailableError):
    """The scheduler accepts requests and answers none (frozen)."""


def _cannot_stop(record: JobRecord, why: Exception | str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"cannot stop job {record.id}: {why}. It stays Stopping, and ends Stopped once the "
        "scheduler answers or this session gives up its connection",
        record.id,
    )


def _workers_running(record: JobRecord, cluster: Cluster) -> list[str] | None:
    """Where the job's process may be: its worker, or (``None``) any, until a worker reports
    it began (its location is the scheduler until then)."""
    return None if record.location == cluster.address else [record.location]


def _still_frozen(cluster: Cluster) -> bool:
    """Whether ``cluster``'s scheduler, found frozen before and still connected, still does
    not answer."""
    connected = cluster.client.status == "running"
    return cluster.unanswering and connected and not cluster.answers_again()


def _close_session(ref: weakref.ref[Session]) -> None:
    from ...session import close_at_exit

    close_at_exit(ref())


class DaskBackend:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._clusters: dict[str, Cluster] = {}
        self._watches: dict[int, JobWatch] = {}
        self._by_instance: dict[str, JobWatch] = {}
        self._by_key: dict[str, JobWatch] = {}
        self._lock = threading.Lock()
        self._connecting = threading.Lock()
        self._adopt_failed: dict[int, float] = {}
        self._closed = False
        self._starter = (os.getpid(), psutil.Process().create_time())
        # Registered after distributed's own exit hooks, so it runs before them: the session
        # stops its jobs while its clients still work.
        atexit.register(_close_session, weakref.ref(session))

    # -- connections -------------------------------------------------------------------------

    def cluster(self, address: str) -> Cluster:
        with self._connecting:
            if self._closed:
                raise InvalidJobStateError("this session has ended: it cannot start jobs")
            cluster = self._clusters.get(address)
            # Connected, but found frozen: kept if it answers now, since the jobs running
            # through it report on this connection; a new one would not hear them.
            if cluster is not None and _still_frozen(cluster):
                raise _NotAnswering(f"the Dask scheduler at {address} does not answer (frozen?)")
            if cluster is not None and cluster.lost:
                # Its scheduler went away (or was restarted): a job started through it would
                # be recorded Running and never report. Connect again, or say why not.
                self._connection_lost(cluster)
                cluster = None
            if cluster is None:
                try:
                    cluster = Cluster(address, self._on_batch, self._on_done, self._on_worker_lost)
                except NoAnswer as exc:
                    raise _NotAnswering(
                        f"cannot reach the Dask scheduler at {address}: {exc}"
                    ) from None
                except Exception as exc:
                    raise BackendUnavailableError(
                        f"cannot reach the Dask scheduler at {address}: {exc}"
                    ) from None
                self._clusters[address] = cluster
            return cluster

    def _connection_lost(self, cluster: Cluster) -> None:
        """Give up ``cluster``, whose client lost its scheduler: its jobs can report nothing
        more through it (a detached one is adopted again through the next connection)."""
        with self._lock:
            stranded = [w for w in self._watches.values() if w.scheduler == cluster.address]
        for watch in stranded:
            self._lost(
                watch,
                f"this session lost its connection to the Dask scheduler at {cluster.address}",
            )
        cluster.close()

    def _lost(self, watch: JobWatch, why: str) -> None:
        """The job's outcome cannot reach this session any more: Failed, or, for a detached
        job, left as it is to be adopted again (the cluster keeps its task by name)."""
        if watch.detached:
            self._forget(watch)
            watch.done.set()
        elif self._fail(watch, f"job {watch.job_id}: {why}; its outcome cannot come back"):
            self._forget(watch)

    def _fail(self, watch: JobWatch, why: str) -> bool:
        """Settle the job Failed with a :class:`WorkerLostError` saying ``why``, unless it has
        been settled already; whether it was settled here."""
        if not watch.begin_settling():
            return False
        lost = WorkerLostError(why, watch.job_id)
        settle_failure(self._session.store, watch.job_id, encode_failure(lost))
        self._settled(watch)
        return True

    # -- starting ----------------------------------------------------------------------------

    def launch(self, record: JobRecord, prepared: PreparedCall, options: LaunchOptions) -> None:
        cluster = self.cluster(prepared.address)
        store = self._session.store
        instance = record.instance_id.hex
        try:
            queue = cluster.open_queue(p.job_queue_name(instance)) if options.detached else None
        except NoAnswer as exc:
            raise _NotAnswering(str(exc), record.id) from None
        watch = JobWatch(
            store,
            record.id,
            instance,
            cluster.address,
            queue=queue,
            queue_refs=1 if queue is not None else 0,
        )
        spec = p.dumps(
            p.RemoteCall(
                job_id=record.id,
                instance=instance,
                payload=prepared.payload,
                working_directory=options.working_directory,
                log_levels=prepared.log_levels,
                channel=queue.name if queue is not None else cluster.inbox.name,
                claim=p.claim_name(instance),
                final_to_channel=queue is None,
            )
        )
        self._register(watch)
        # A detached job has no local host to outlive: no process here settles it as orphaned.
        host: dict[str, Any] = (
            {"host_pid": None} if options.detached else {"host_started": self._starter[1]}
        )
        try:
            if not transition(
                store,
                record.id,
                JobState.Running,
                location=cluster.address,
                resume_data=routing.routing(cluster.address, self._starter),
                **host,
            ):
                self._end(watch)  # stopped while it waited for a throttle slot
                return
            watch.future = cluster.submit(spec, p.task_key(instance))
            if queue is not None:
                cluster.publish(watch.future, p.job_queue_name(instance))
                cluster.poll(queue.name, watch.drain)
        except NoAnswer as exc:
            self._forget(watch)
            raise _NotAnswering(str(exc), record.id) from None
        except BaseException:
            self._forget(watch)
            if watch.future is not None:
                # The job fails here: it must not run there. (Its own error is the one raised.)
                with contextlib.suppress(Exception):
                    cluster.cancel(watch.future)
            raise

    def _register(self, watch: JobWatch) -> bool:
        """Watch ``watch``'s job; ``False`` if this session watches it already."""
        with self._lock:
            if watch.job_id in self._watches:
                return False
            self._watches[watch.job_id] = watch
            self._by_instance[watch.instance] = watch
            self._by_key[p.task_key(watch.instance)] = watch
            return True

    def _forget(self, watch: JobWatch) -> None:
        with self._lock:
            self._watches.pop(watch.job_id, None)
            self._by_instance.pop(watch.instance, None)
            self._by_key.pop(p.task_key(watch.instance), None)

    # -- what the cluster's threads report ---------------------------------------------------

    def _on_batch(self, instance: str, seq: int, messages: list[p.Message], final: bool) -> None:
        watch = self._by_instance.get(instance)
        if watch is None:
            return
        if not final:
            watch.offer(seq, messages)
        elif watch.begin_settling():
            # The interim batches came before it, through this same thread: all applied.
            watch.note_claim(messages)
            try:
                settle(self._session.store, watch.job_id, messages, watch.scheduler)
            except BaseException:
                watch.give_up_settling()  # the task's end settles it instead
                raise
            self._settled(watch)

    def _on_done(self, future: Any) -> None:
        watch = self._by_key.get(str(future.key))
        if watch is None:
            return
        if future.status == "cancelled" and not self._being_stopped(watch):
            # Not by a stop: this client lost its scheduler (or someone cancelled the task).
            why = f"its Dask task was cancelled, not by a stop ({cancel_reason(future)})"
            self._lost(watch, why)
            if not watch.detached:  # a detached job's queue and published task stay for later
                self._clean_up(watch)
            return
        if watch.begin_settling():
            store = self._session.store
            how, result = task_outcome(future)
            if how == "finished":
                sent, messages = p.decode_result(result)
                watch.note_claim(messages)
                watch.wait_applied(sent, SETTLE_WAIT_S)
                settle(store, watch.job_id, messages, watch.scheduler)
            elif how == "cancelled":
                settle_cancelled(store, watch.job_id)
            else:
                failure = self._task_failure(watch, result)
                settle_failure(store, watch.job_id, encode_failure(failure))
            self._settled(watch)
        self._clean_up(watch)

    def _being_stopped(self, watch: JobWatch) -> bool:
        """Whether a stop (this process's or another's) asked for the job's end."""
        try:
            state = self._session.store.get_job(watch.job_id).state
        except AsJobError:  # removed (a forced remove stops first)
            return True
        return state in (JobState.Stopping, JobState.Stopped)

    def _on_worker_lost(self, scheduler: str, worker: str, assigned: list[str]) -> None:
        """A worker left the cluster at ``scheduler`` with the tasks ``assigned`` to it (their
        keys). The jobs that had begun there (their location is that worker) lost their
        processes with it (the fork server there kills them): fail them now, and cancel their
        tasks, which Dask would otherwise keep to run again once some worker is free (with
        no worker left, never). The others had not begun: Dask runs them elsewhere."""
        time.sleep(WORKER_LOST_GRACE_S)  # a job that had just ended: its final batch first
        with self._lock:
            watches = [self._by_key[key] for key in assigned if key in self._by_key]
        cluster = self._clusters.get(scheduler)
        for watch in watches:
            why = (
                f"job {watch.job_id}: its Dask worker {worker} left the cluster while running "
                "it (killed, crashed or shut down), and the job's process with it"
            )
            if watch.scheduler != scheduler or not self._began_on(watch, worker):
                continue
            if not self._fail(watch, why):
                continue
            if cluster is not None and watch.future is not None:
                with contextlib.suppress(Exception):  # its end then tidies up (_on_done)
                    cluster.cancel(watch.future)

    def _began_on(self, watch: JobWatch, worker: str) -> bool:
        try:
            return self._session.store.get_job(watch.job_id).location == worker
        except AsJobError:
            return False

    @staticmethod
    def _task_failure(watch: JobWatch, error: BaseException) -> BaseException:
        if isinstance(error, KilledWorker):
            return WorkerLostError(
                f"job {watch.job_id}: Dask gave up on its task after losing the workers that "
                f"ran it ({error})",
                watch.job_id,
            )
        return error  # e.g. asjob cannot be imported on the worker: the job says so

    def _end(self, watch: JobWatch) -> None:
        """The job has been settled and its task has ended (or never began)."""
        self._settled(watch)
        self._clean_up(watch)

    def _settled(self, watch: JobWatch) -> None:
        """The job has been settled: stop watching it and tell the session."""
        with self._lock:
            self._watches.pop(watch.job_id, None)
            self._by_instance.pop(watch.instance, None)
        self._session.job_finished(watch.job_id)  # first: who waits on `done` asks the session
        watch.done.set()

    def _clean_up(self, watch: JobWatch) -> None:
        """The job's task has ended too: tidy up on the cluster."""
        self._forget(watch)
        cluster = self._clusters.get(watch.scheduler)
        if cluster is None:
            return
        try:
            if watch.claim is not None:
                cluster.release_claim(watch.claim)
            if watch.queue is not None:
                cluster.poll(watch.queue.name, None)
                cluster.client.unpublish_dataset(p.job_queue_name(watch.instance))
                for _ in range(watch.queue_refs):
                    watch.queue.close()
        except Exception:  # leftovers on a cluster that went away
            pass
        watch.future = None

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, record: JobRecord) -> None:
        with self._lock:
            # (Settled a moment ago, from its final batch, its task may not have ended yet.)
            watch = self._watches.get(record.id) or self._by_key.get(
                p.task_key(record.instance_id.hex)
            )
        if watch is not None:
            address = watch.scheduler
        else:
            info = routing.read(record.resume_data)
            if info is None:
                return
            address = info["scheduler"]
        known = self._clusters.get(address)
        if known is not None and known.just_found_frozen:
            known.kill_when_answered(record.instance_id.hex, _workers_running(record, known))
            raise _cannot_stop(record, f"the Dask scheduler at {address} does not answer")
        try:
            cluster = self.cluster(address)
        except _NotAnswering as exc:
            raise _cannot_stop(record, exc) from None
        except AsJobError:  # gone: nothing runs there any more
            return
        try:
            self._kill_or_cancel(cluster, record, watch)
        except NoAnswer as exc:
            raise _cannot_stop(record, exc) from None
        if watch is not None:
            watch.done.wait(STOP_WAIT_S)

    @staticmethod
    def _kill_or_cancel(cluster: Cluster, record: JobRecord, watch: JobWatch | None) -> None:
        """Kill the job's process where it runs, or cancel its task if it runs nowhere.
        Raises :class:`NoAnswer` if the scheduler does not answer."""
        instance = record.instance_id.hex
        try:
            killed = cluster.kill(instance, _workers_running(record, cluster))
        except NoAnswer:
            raise
        except Exception:  # its worker is gone: nothing runs there
            killed = False
        if not killed:
            future = watch.future if watch is not None else None
            if future is None and watch is None:
                future = Future(p.task_key(instance), cluster.client)
            if future is not None and not future.done():
                cluster.cancel(future)

    # -- other processes' jobs ---------------------------------------------------------------

    def is_live(self, job_id: int) -> bool:
        return job_id in self._watches

    def adopt(self, job_id: int) -> bool:
        """Watch a detached job whose starter has exited, to collect its end from the cluster.

        Returns whether this session now watches the job.
        """
        store = self._session.store
        try:
            record = store.get_job(job_id)
        except AsJobError:
            return False
        info = routing.read(record.resume_data)
        if record.finished or not record.detached or info is None or self._closed:
            return False
        if job_id in self._watches:
            return True
        if self._starter_alive(info) or (
            time.monotonic() - self._adopt_failed.get(job_id, -ADOPT_RETRY_S) < ADOPT_RETRY_S
        ):
            return False
        instance = record.instance_id.hex
        name = p.job_queue_name(instance)
        try:
            cluster = self.cluster(info["scheduler"])
            future = cluster.client.get_dataset(name, default=None)
        except Exception:  # unreachable now: the job stays as the store has it
            self._adopt_failed[job_id] = time.monotonic()
            return False
        if future is None:
            self._lost_on_cluster(record, cluster.address)
            return False
        watch = JobWatch(
            store, job_id, instance, cluster.address, queue=cluster.open_queue(name), queue_refs=2
        )
        watch.future = future
        if not self._register(watch):  # another thread adopted it meanwhile
            watch.queue.close()
            return True
        cluster.track(future)
        cluster.poll(name, watch.drain)
        # Over on the cluster already? Then collect its end now, so the store read that
        # follows (a get, a wait with timeout 0, a receive) sees how it ended. A new future
        # learns its task's state from the scheduler a moment after it is made.
        deadline = time.monotonic() + ADOPT_LOOK_S
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if future.done():
            watch.done.wait(STOP_WAIT_S)
        return True

    def _starter_alive(self, info: dict[str, Any]) -> bool:
        starter = info.get("starter") or [None, None]
        pid, created = starter[0], starter[1]
        if pid is None or pid == os.getpid():
            return False  # this process: its starting session has ended
        return not process_gone(int(pid), created)

    def _lost_on_cluster(self, record: JobRecord, address: str) -> None:
        if self._session.store.get_job(record.id).finished:
            return  # another process collected it meanwhile
        lost = WorkerLostError(
            f"job {record.id}: the Dask scheduler at {address} no longer holds it "
            "(was the cluster restarted?)",
            record.id,
        )
        transition(self._session.store, record.id, JobState.Failed, reason=encode_failure(lost))

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        with self._connecting:
            self._closed = True  # no new connections; those here serve clean-ups until closed
            clusters = dict(self._clusters)
        with self._lock:
            # Settled, their tasks not yet ended: this client's going releases their tasks, so
            # Dask cannot run them again, and their claims go now.
            ending = [w for w in self._by_key.values() if w.done.is_set() and w.claim]
            self._watches.clear()
            self._by_instance.clear()
            self._by_key.clear()
        for watch in ending:
            cluster = clusters.get(watch.scheduler)
            if cluster is not None and watch.claim is not None:
                with contextlib.suppress(Exception):
                    cluster.release_claim(watch.claim)
        for cluster in clusters.values():
            cluster.close()
        with self._connecting:
            self._clusters.clear()
