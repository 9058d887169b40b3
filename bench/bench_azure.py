"""100 VM creations against the local ARM endpoint: asjob (process, thread) and its peers.

Run: python bench/bench_azure.py [--count 100] [--operation-seconds 1.0]

The emulator runs in its own process (it shares no interpreter lock with either side); every
operation stays ``InProgress`` for ``--operation-seconds``. Side by side, in one run:

* asjob process: ``as_job(compute.virtual_machines.begin_create_or_update)``, one worker process
  per VM, forked from the pre-loaded server;
* asjob thread: the same with ``kind="thread"``;
* ThreadPoolExecutor: ``count`` threads calling the SDK directly (one shared client);
* one after another: the SDK called sequentially, estimated from a sample of calls.

For each: wall time, CPU seconds on the caller's side, summed PSS of the processes involved
(sampled while the work runs, the largest sum kept, in a second pass so that reading /proc does
not slow the timed one) and the token requests the endpoint saw; for the process kind also what
one worker cost (CPU, the kernel's share of it, page faults) and how long the first start took
(it starts the fork server). Targets: both kinds within 1.15x of the ThreadPoolExecutor's wall
time; the process kind's PSS at most 400 MB; one token request.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import psutil
from asjob.providers.azure.emulator.process import emulator_process

SUBSCRIPTION = "00000000-0000-0000-0000-0000000be4c4"
POLLING_INTERVAL = 0.25
SAMPLE_EVERY_S = 0.3


@dataclass
class Outcome:
    name: str
    wall: float
    pss_mb: float | None
    tokens: int
    cpu_s: float | None = None
    note: str = ""
    workers: WorkerCost | None = None


@dataclass(frozen=True)
class WorkerCost:
    """What the fork server's reaped workers used: CPU split into user and kernel time, and
    minor page faults (a forked worker's first write to a page it shares with the server is
    one: the kernel copies the page)."""

    user_s: float = 0.0
    kernel_s: float = 0.0
    page_faults: int = 0

    def __sub__(self, other: WorkerCost) -> WorkerCost:
        return WorkerCost(
            self.user_s - other.user_s,
            self.kernel_s - other.kernel_s,
            self.page_faults - other.page_faults,
        )


def token_requests(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=10) as response:
        return int(json.load(response)["token_requests"])


class PssSampler:
    """Sums the PSS of the chosen processes every few hundred ms; keeps the largest sum.

    ``processes=None`` samples nothing (the timed pass).
    """

    def __init__(self, processes: Callable[[], list[psutil.Process]] | None) -> None:
        self._processes = processes
        self._stop = threading.Event()
        self.peak = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        assert self._processes is not None
        while not self._stop.wait(SAMPLE_EVERY_S):
            total = 0
            for process in self._processes():
                with suppress(psutil.Error):  # a worker that ended meanwhile
                    total += process.memory_full_info().pss
            self.peak = max(self.peak, total / 2**20)

    def __enter__(self) -> PssSampler:
        if self._processes is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._processes is not None:
            self._thread.join()


def client_cpu_seconds() -> float:
    """CPU seconds used so far on the caller's side: this process, and the fork server with
    the workers it has reaped (the emulator, also a child of this process, is left out)."""
    me = psutil.Process()
    times = me.cpu_times()
    total = float(times.user + times.system)
    for child in me.children():
        if "asjob.worker.server" not in " ".join(_cmdline(child)):
            continue
        with suppress(psutil.Error):
            t = child.cpu_times()
            total += float(t.user + t.system + t.children_user + t.children_system)
    return total


def reaped_worker_cost() -> WorkerCost:
    """The fork server's reaped children so far (the session's fork server: the one child of
    this process running ``asjob.worker.server``)."""
    for child in psutil.Process().children():
        if "asjob.worker.server" not in " ".join(_cmdline(child)):
            continue
        with suppress(psutil.Error, OSError, ValueError):
            times = child.cpu_times()
            with open(f"/proc/{child.pid}/stat") as stat:
                # after "(comm)": state is field 3; cminflt (reaped children's minor faults)
                # is field 11
                fields = stat.read().rsplit(")", 1)[1].split()
            return WorkerCost(times.children_user, times.children_system, int(fields[8]))
    return WorkerCost()


def this_process() -> list[psutil.Process]:
    return [psutil.Process()]


def this_process_and_workers() -> list[psutil.Process]:
    me = psutil.Process()
    # The fork server and its workers; the emulator is a child too, and is left out.
    return [
        me,
        *(p for p in me.children(recursive=True) if "emulator" not in " ".join(_cmdline(p))),
    ]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return list(process.cmdline())
    except psutil.Error:
        return []


def body(name: str) -> dict[str, Any]:
    return {
        "location": "westus",
        "tags": {"bench": "asjob"},
        "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}},
    }


def run_asjob(url: str, kind: str, count: int, measure_memory: bool) -> Outcome:
    from asjob.providers.azure import AzureContext, CredentialReference
    from azure.mgmt.compute import ComputeManagementClient

    import asjob

    context = AzureContext(
        subscription_id=SUBSCRIPTION,
        base_url=url,
        credential=CredentialReference.managed_identity(),
        polling_interval=POLLING_INTERVAL,
    )
    compute = context.client(ComputeManagementClient)
    create = asjob.as_job(compute.virtual_machines.begin_create_or_update, kind=kind)
    before = token_requests(url)
    sampled = this_process_and_workers if kind == "process" else this_process
    with PssSampler(sampled if measure_memory else None) as sampler:
        cpu_before, workers_before = client_cpu_seconds(), reaped_worker_cost()
        started = time.monotonic()
        jobs = [create(f"rg-{kind}", "vm000", body("vm000"))]
        first_start = time.monotonic() - started
        jobs += [create(f"rg-{kind}", f"vm{i:03d}", body(f"vm{i:03d}")) for i in range(1, count)]
        vms = asjob.receive_job(jobs, wait=True)
        wall = time.monotonic() - started
        # Workers that ended are counted once the fork server has reaped them.
        time.sleep(0.2)
        cpu = client_cpu_seconds() - cpu_before
        workers = reaped_worker_cost() - workers_before
    assert [vm.provisioning_state for vm in vms] == ["Succeeded"] * count
    asjob.remove_job(jobs)
    tokens = token_requests(url) - before
    outcome = Outcome(f"asjob {kind}", wall, sampler.peak, tokens, cpu)
    if kind == "process":
        outcome.workers = workers
        # The session's first process job starts the fork server (an interpreter importing
        # what the caller imported); later batches of the same session do not pay it.
        outcome.note = f"first start {first_start:.2f} s (the fork server starting)"
    return outcome


def run_pair(run: Callable[[bool], Outcome]) -> Outcome:
    """The timed pass, then a pass that samples memory; wall and tokens are the timed pass's."""
    timed = run(False)
    timed.pss_mb = run(True).pss_mb  # wall, tokens and CPU are the timed pass's
    return timed


def direct_client(url: str) -> Any:
    from asjob.providers.azure.context import AllowLoopbackHttp
    from azure.identity import ManagedIdentityCredential
    from azure.mgmt.compute import ComputeManagementClient

    return ComputeManagementClient(
        ManagedIdentityCredential(),
        SUBSCRIPTION,
        base_url=url,
        per_call_policies=[AllowLoopbackHttp()],
        polling_interval=POLLING_INTERVAL,
    )


def run_thread_pool(url: str, count: int, measure_memory: bool) -> Outcome:
    client = direct_client(url)
    before = token_requests(url)

    def create(i: int) -> Any:
        poller = client.virtual_machines.begin_create_or_update(
            "rg-pool", f"vm{i:03d}", body(f"vm{i:03d}")
        )
        return poller.result()

    sampled = this_process if measure_memory else None
    with PssSampler(sampled) as sampler, ThreadPoolExecutor(count) as pool:
        cpu_before = client_cpu_seconds()
        started = time.monotonic()
        vms = list(pool.map(create, range(count)))
        wall = time.monotonic() - started
        cpu = client_cpu_seconds() - cpu_before
    assert [vm.provisioning_state for vm in vms] == ["Succeeded"] * count
    tokens = token_requests(url) - before
    return Outcome(f"ThreadPoolExecutor({count})", wall, sampler.peak, tokens, cpu)


def run_sequential(url: str, count: int, sample: int) -> Outcome:
    client = direct_client(url)
    before = token_requests(url)
    started = time.monotonic()
    for i in range(sample):
        client.virtual_machines.begin_create_or_update(
            "rg-seq", f"vm{i:03d}", body(f"vm{i:03d}")
        ).result()
    per_call = (time.monotonic() - started) / sample
    return Outcome(
        "one after another",
        per_call * count,
        None,
        token_requests(url) - before,
        note=f"estimated: {sample} calls x {count / sample:g}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--operation-seconds", type=float, default=1.0)
    parser.add_argument("--sequential-sample", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch, emulator_process(args.operation_seconds) as url:
        os.environ["ASJOB_STORE"] = os.path.join(scratch, "jobs.db")
        os.environ["ASJOB_CONTEXT_FILE"] = os.path.join(scratch, "context.json")
        os.environ["IDENTITY_ENDPOINT"] = f"{url}/msi/token"
        os.environ["IDENTITY_HEADER"] = "bench"
        os.environ["NO_PROXY"] = "127.0.0.1"
        import asjob

        print(
            f"{args.count} VM creations, {args.operation_seconds:g}s each, at {url}, "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        count = args.count
        outcomes = [
            run_pair(lambda memory: run_thread_pool(url, count, memory)),
            run_pair(lambda memory: run_asjob(url, "process", count, memory)),
            run_pair(lambda memory: run_asjob(url, "thread", count, memory)),
            run_sequential(url, count, args.sequential_sample),
        ]
        asjob.use_store(asjob.MemoryStore())  # end the session (and its fork server) now

    baseline = outcomes[0].wall
    print(f"\n{'':<24}{'wall s':>8}{'vs pool':>9}{'CPU s':>8}{'PSS MB':>9}{'tokens':>8}")
    for o in outcomes:
        pss = "" if o.pss_mb is None else f"{o.pss_mb:.0f}"
        cpu = "" if o.cpu_s is None else f"{o.cpu_s:.2f}"
        print(
            f"{o.name:<24}{o.wall:>8.2f}{o.wall / baseline:>8.2f}x{cpu:>8}{pss:>9}{o.tokens:>8}"
            f"  {o.note}"
        )
    print(
        f"CPU s: used on the caller's side (with the fork server and its workers), emulator "
        f"excluded. On {os.cpu_count()} CPUs a run cannot take less wall time than its CPU "
        "seconds shared among them."
    )
    process, thread = outcomes[1], outcomes[2]
    if process.workers is not None and process.workers.page_faults > 0:
        w = process.workers
        print(
            f"asjob process: a worker used {1000 * (w.user_s + w.kernel_s) / count:.1f} ms of "
            f"CPU, {1000 * w.kernel_s / count:.1f} ms of it in the kernel, with "
            f"{w.page_faults / count:.0f} page faults (each page a worker writes that it "
            "shares with the fork server is copied)."
        )
    checks = {
        "process within 1.15x of the pool": process.wall <= 1.15 * baseline,
        "thread within 1.15x of the pool": thread.wall <= 1.15 * baseline,
        "process PSS <= 400 MB": (process.pss_mb or 0) <= 400,
        "one token request per asjob run": process.tokens == 1 and thread.tokens == 1,
    }
    print()
    for check, ok in checks.items():
        print(f"{'ok  ' if ok else 'MISS'} {check}")


if __name__ == "__main__":
    main()
