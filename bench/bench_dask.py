"""Dask benchmark: a no-op job through the ``dask`` kind beside raw Dask on the same cluster.

Both round trips run against one cluster in one run: ``start_job(noop, kind=DaskKind(address))
.receive(wait=True)`` (the call in a process of its own on a worker, the outcome written to the
store, then received) against ``client.submit(noop).result()``. Rounds alternate between the two
so both see the same machine. With ``--jobs N`` it also times N concurrent one-second jobs.

Back to back, each side's round also pays for what the other left behind: the messages that
release a finished task (Dask's client sends its messages at most every 10 ms, the scheduler
those to a worker every 5 ms), asjob's replacement of the job process a job took, the release
of its claim. ``--pause MS`` waits that long, untimed, before each round, so that each is timed
from a quiet cluster.

Run: python bench/bench_dask.py [--rounds N] [--pause MS] [--jobs N] [--scheduler tcp://host:8786]
Without ``--scheduler`` it starts a scheduler and two workers on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import asjob  # noqa: E402
from asjob.kinds.dask import DaskKind  # noqa: E402
from asjob.kinds.dask.loopback import loopback_cluster  # noqa: E402
from bench.noop import noop, sleep  # noqa: E402

TARGET_RATIO = 1.5
WORKERS = 2


def _figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000,
    }


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="milliseconds to wait, untimed, before each round (default: none)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="also time this many concurrent 1 s jobs (default: skip)",
    )
    parser.add_argument("--scheduler", help="an existing cluster (default: start one here)")
    args = parser.parse_args()

    from distributed import Client

    asjob.use_store(asjob.SQLiteStore(os.path.join(tempfile.mkdtemp(), "jobs.db")))
    with contextlib.ExitStack() as stack:
        # Workers import bench.noop: they run from the repository, with it on their path.
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
        }
        address = args.scheduler or (
            stack.enter_context(
                loopback_cluster(WORKERS, max(2, args.jobs), env=env, cwd=ROOT)
            ).address
        )
        client = stack.enter_context(Client(address, set_as_default=False, timeout=30))
        client.wait_for_workers(WORKERS if not args.scheduler else 1, timeout=60)
        kind = DaskKind(address)

        def through_asjob() -> object:
            return asjob.start_job(noop, kind=kind).receive(wait=True)

        def raw() -> object:
            return client.submit(noop, pure=False).result()

        for _ in range(5):  # warm up: connections, each worker's fork server, imports
            through_asjob()
            raw()
        samples: dict[str, list[float]] = {"asjob dask kind": [], "raw client.submit": []}
        pause = args.pause / 1000
        for _ in range(args.rounds):
            time.sleep(pause)
            samples["asjob dask kind"].append(_timed(through_asjob))
            time.sleep(pause)
            samples["raw client.submit"].append(_timed(raw))

        paused = f", {args.pause:g} ms pause before each" if args.pause else ""
        print(f"(a) no-op round trip on {address}, {args.rounds} rounds each, interleaved{paused}")
        print(f"    {'':20} {'median ms':>10} {'p95 ms':>10}")
        figures = {name: _figures(values) for name, values in samples.items()}
        for name, values in figures.items():
            print(f"    {name:20} {values['median_ms']:10.2f} {values['p95_ms']:10.2f}")
        ratio = figures["asjob dask kind"]["median_ms"] / figures["raw client.submit"]["median_ms"]
        print(f"    asjob / raw (median): {ratio:.2f}x (target <= {TARGET_RATIO}x)")

        if args.jobs:
            started = time.perf_counter()
            jobs = [asjob.start_job(sleep, 1.0, kind=kind) for _ in range(args.jobs)]
            assert asjob.receive_job(jobs, wait=True) == [1.0] * args.jobs
            ours = time.perf_counter() - started
            started = time.perf_counter()
            futures = [client.submit(sleep, 1.0, pure=False) for _ in range(args.jobs)]
            assert client.gather(futures) == [1.0] * args.jobs
            theirs = time.perf_counter() - started
            print(
                f"\n(b) {args.jobs} concurrent jobs sleeping 1 s: asjob {ours:.2f} s, "
                f"raw Dask {theirs:.2f} s ({ours / theirs:.2f}x)"
            )
        asjob.remove_job(asjob.get_job())


if __name__ == "__main__":
    main()
