"""Workloads the benchmarks run as jobs (importable by worker processes)."""

from __future__ import annotations

import time


def noop() -> None:
    return None


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
