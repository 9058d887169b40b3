"""Core benchmark: asjob's process and thread kinds beside concurrent.futures and multiprocessing.

(a) no-op latency, start -> result received, median and p95 over many rounds;
(b) 100 concurrent jobs that each sleep 1 s: wall time, and the summed PSS memory of every
    process involved, sampled while all 100 are sleeping.

Each scenario runs in a fresh interpreter so memory figures do not leak between them.
Run: python bench/bench_core.py [--rounds N] [--jobs N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.noop import noop, sleep  # noqa: E402

TARGETS = {
    "process_latency_ms": 5.0,
    "thread_latency_ms": 1.0,
    "wall_ratio": 1.15,
    "process_pss_mb": 300.0,
}


def summed_pss_mb() -> float:
    """PSS of this process and all its descendants (the fork server and workers included)."""
    me = psutil.Process()
    total = 0
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a worker that ended meanwhile
            total += process.memory_full_info().pss
    return total / 2**20


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(len(ordered) * 0.95) - 1] * 1000,
    }


def latency(name: str, rounds: int) -> dict[str, float]:
    samples: list[float] = []
    if name.startswith("asjob-"):
        import asjob

        kind = name.removeprefix("asjob-")
        asjob.use_store(asjob.SQLiteStore(os.path.join(tempfile.mkdtemp(), "jobs.db")))
        asjob.start_job(noop, kind=kind).receive(wait=True)  # warm up (starts the fork server)
        for _ in range(rounds):
            started = time.perf_counter()
            asjob.start_job(noop, kind=kind).receive(wait=True)
            samples.append(time.perf_counter() - started)
    else:
        pool_type = ProcessPoolExecutor if name == "ProcessPoolExecutor" else ThreadPoolExecutor
        with pool_type(max_workers=1) as pool:
            pool.submit(noop).result()
            for _ in range(rounds):
                started = time.perf_counter()
                pool.submit(noop).result()
                samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def _sample_pss_after(delay: float, into: list[float]) -> threading.Thread:
    def sample() -> None:
        time.sleep(delay)
        into.append(summed_pss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


def concurrent(name: str, jobs: int) -> dict[str, float]:
    pss: list[float] = []
    started = time.perf_counter()
    if name.startswith("asjob-"):
        import asjob

        kind = name.removeprefix("asjob-")
        asjob.use_store(asjob.SQLiteStore(os.path.join(tempfile.mkdtemp(), "jobs.db")))
        started = time.perf_counter()
        sampler = _sample_pss_after(0.6, pss)
        handles = [asjob.start_job(sleep, 1.0, kind=kind) for _ in range(jobs)]
        results = asjob.receive_job(handles, wait=True)
    elif name == "ThreadPoolExecutor":
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            sampler = _sample_pss_after(0.6, pss)
            results = [f.result() for f in [pool.submit(sleep, 1.0) for _ in range(jobs)]]
    else:  # a fresh spawned interpreter per job
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes=jobs) as pool:
            sampler = _sample_pss_after(0.6, pss)
            results = pool.map(sleep, [1.0] * jobs, chunksize=1)
    wall = time.perf_counter() - started
    sampler.join()
    assert results == [1.0] * jobs, results
    return {"wall_s": wall, "pss_mb": pss[0] if pss else float("nan")}


def _run_isolated(scenario: str, name: str, amount: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--scenario", scenario, "--name", name, "--amount", str(amount)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--amount", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        run: Callable[[str, int], Any] = latency if args.scenario == "latency" else concurrent
        print(json.dumps(run(args.name, args.amount)))
        return

    print(f"(a) no-op job, start -> result, {args.rounds} rounds")
    print(f"    {'':24} {'median ms':>10} {'p95 ms':>10}")
    lat = {}
    for name in ("asjob-process", "asjob-thread", "ProcessPoolExecutor", "ThreadPoolExecutor"):
        lat[name] = _run_isolated("latency", name, args.rounds)
        print(f"    {name:24} {lat[name]['median_ms']:10.2f} {lat[name]['p95_ms']:10.2f}")
    print(
        f"    targets: asjob-process median <= {TARGETS['process_latency_ms']} ms, "
        f"asjob-thread median <= {TARGETS['thread_latency_ms']} ms"
    )

    print(f"\n(b) {args.jobs} concurrent jobs sleeping 1 s")
    print(f"    {'':24} {'wall s':>10} {'vs TPE':>8} {'PSS MB':>10}")
    conc = {}
    for name in ("ThreadPoolExecutor", "asjob-process", "asjob-thread", "multiprocessing-spawn"):
        conc[name] = _run_isolated("concurrent", name, args.jobs)
    baseline = conc["ThreadPoolExecutor"]["wall_s"]
    for name, figures in conc.items():
        print(
            f"    {name:24} {figures['wall_s']:10.2f} {figures['wall_s'] / baseline:7.2f}x "
            f"{figures['pss_mb']:10.1f}"
        )
    print(
        f"    targets: both asjob kinds <= {TARGETS['wall_ratio']}x ThreadPoolExecutor wall, "
        f"asjob-process PSS <= {TARGETS['process_pss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
