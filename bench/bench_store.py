"""Store benchmark: jobs across processes, through the SQLite store.

(a) ``asjob get`` as a fresh process with 10,000 jobs in the store (table and ``--json``),
    beside the same command on an empty store and a bare interpreter start (fixed costs).
(b) no-op latency, start -> result received:
      in-session     one process starts the job and receives it (the kind tells it of the end);
      cross-process  one process starts it, an already running second process receives it
                     (it learns of the end by polling the store);
      CLI            ``asjob start`` then ``asjob receive --wait``, each a fresh process, as a
                     CI pipeline's steps run them.

Run: python bench/bench_store.py [--jobs N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import asjob  # noqa: E402
from asjob import records  # noqa: E402
from asjob.states import JobState, transition  # noqa: E402
from asjob.store.base import NewJob  # noqa: E402
from bench.noop import noop  # noqa: E402

TARGET_GET_MS = 300.0

# The second process of the cross-process figure: receives each job id it is sent.
RECEIVER = """
import sys, time, asjob
for line in sys.stdin:
    job_id, started = line.split()
    asjob.receive_job(int(job_id), wait=True)
    print(time.monotonic() - float(started), flush=True)
"""


def _env(store: Path) -> dict[str, str]:
    paths = [ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "ASJOB_STORE": str(store), "PYTHONPATH": os.pathsep.join(paths)}


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of a command. No ``timeout=``: with one, subprocess polls for the exit with
    sleeps of up to 50 ms, which would round every figure up to the next 50 ms."""
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _asjob(store: Path, *args: str) -> float:
    return _timed([sys.executable, "-m", "asjob", *args], _env(store))


def _fill(store: Path, jobs: int) -> None:
    """``jobs`` finished jobs, each with its result still to receive, as a busy runner has."""
    target = asjob.SQLiteStore(store)
    payload = records.encode(records.OutputItem(0, "result"))
    for n in range(jobs):
        record = target.create_job(
            NewJob(
                name="",
                command=f"provision('vm{n}', size=2)",
                job_type_name="BackgroundJob",
                kind="process",
                session_id="an-earlier-ci-step",
            )
        )
        transition(target, record.id, JobState.Running)
        transition(target, record.id, JobState.Completed, records=[("output", payload)])


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"{statistics.median(ordered) * 1000:10.1f} {ordered[0] * 1000:10.1f} {p95 * 1000:10.1f}"


def bench_get(jobs: int, runs: int) -> None:
    print(f"(a) `asjob get`, a fresh process each run, {runs} runs")
    print(f"    {'':34} {'median ms':>10} {'min ms':>10} {'p95 ms':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Path(tmp) / "empty.db", Path(tmp) / "full.db"
        asjob.SQLiteStore(empty)
        began = time.perf_counter()
        _fill(full, jobs)
        print(f"    (filled {jobs} jobs in {time.perf_counter() - began:.1f} s)")
        rows = {
            "python -c pass": [_timed([sys.executable, "-c", "pass"]) for _ in range(runs)],
            "asjob get, empty store": [_asjob(empty, "get") for _ in range(runs)],
            f"asjob get, {jobs} jobs": [_asjob(full, "get") for _ in range(runs)],
            f"asjob get --json, {jobs} jobs": [_asjob(full, "get", "--json") for _ in range(runs)],
        }
        for name, samples in rows.items():
            print(f"    {name:34} {_ms(samples)}")
        median = statistics.median(rows[f"asjob get, {jobs} jobs"]) * 1000
        verdict = "met" if median <= TARGET_GET_MS else "MISSED"
        print(f"    target: asjob get with {jobs} jobs <= {TARGET_GET_MS:.0f} ms: {verdict}")


def bench_latency(rounds: int, cli_rounds: int) -> None:
    print(f"\n(b) no-op job, start -> result received ({rounds} rounds; CLI {cli_rounds})")
    print(f"    {'':34} {'median ms':>10} {'min ms':>10} {'p95 ms':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "jobs.db"
        session = asjob.use_store(asjob.SQLiteStore(store))
        asjob.start_job(noop).receive(wait=True)  # warm up: starts the fork server
        in_session = []
        for _ in range(rounds):
            started = time.perf_counter()
            asjob.start_job(noop).receive(wait=True)
            in_session.append(time.perf_counter() - started)

        receiver = subprocess.Popen(
            [sys.executable, "-c", RECEIVER],
            env=_env(store),
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert receiver.stdin is not None and receiver.stdout is not None
        cross = []
        for _ in range(rounds + 1):  # the first round warms the receiver up
            started = time.monotonic()  # CLOCK_MONOTONIC: one clock for both processes
            job = asjob.start_job(noop)
            receiver.stdin.write(f"{job.id} {started}\n")
            receiver.stdin.flush()
            cross.append(float(receiver.stdout.readline()))
        receiver.stdin.close()
        receiver.wait(timeout=60)
        receiver.stdout.close()
        session.close()

        cli = []
        for _ in range(cli_rounds):
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "asjob", "start", "bench.noop:noop"],
                env=_env(store),
                check=True,
                capture_output=True,
                text=True,
            )
            _asjob(store, "receive", done.stdout.strip(), "--wait")
            cli.append(time.perf_counter() - started)
        print(f"    {'in-session':34} {_ms(in_session)}")
        print(f"    {'cross-process (receiver polls)':34} {_ms(cross[1:])}")
        print(f"    {'CLI: asjob start + receive --wait':34} {_ms(cli)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7, help="fresh `asjob get` processes")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--cli-rounds", type=int, default=10)
    args = parser.parse_args()
    bench_get(args.jobs, args.runs)
    bench_latency(args.rounds, args.cli_rounds)


if __name__ == "__main__":
    main()
