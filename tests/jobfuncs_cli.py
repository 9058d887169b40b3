"""Functions the CLI and cross-process tests start as jobs (``tests.jobfuncs_cli:NAME``)."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Iterator
from typing import Any

from asjob import current_job


def add(a: int, b: int) -> int:
    return a + b


def noop() -> None:
    return None


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """What the job was called with, to check how the CLI parses arguments."""
    return {"args": list(args), "kwargs": kwargs, "types": [type(a).__name__ for a in args]}


def sleep_then(seconds: float, value: Any = "done") -> Any:
    time.sleep(seconds)
    return value


def pid_then_sleep(path: str, seconds: float) -> str:
    """Write this worker's pid to ``path``, then sleep: for stop tests that check the kill."""
    with open(path, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(seconds)
    return "not stopped"


def fail(message: str = "deliberate") -> None:
    raise ValueError(message)


def talk_then_fail() -> None:
    print("about to fail")
    current_job().write_error("a non-terminating error")
    raise RuntimeError("it went wrong")


def count(n: int) -> Iterator[int]:
    yield from range(n)


def odd_values() -> list[Any]:
    """A string, JSON values and one JSON cannot hold."""
    return ["text", 2, {"k": [1, None]}, datetime.date(2024, 1, 2)]


def a_date() -> datetime.date:
    return datetime.date(2024, 1, 2)


def greet(name: str) -> str:
    print(f"hello {name}")
    return f"hi {name}"


def progress(steps: int, pause: float) -> int:
    for step in range(steps):
        current_job().write_progress("Working", f"step {step + 1}", int(100 * (step + 1) / steps))
        time.sleep(pause)
    return steps


not_a_function = 42


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def print_lines(n: int, pause: float = 0.0) -> str:
    """Print ``p0`` ... ``p{n-1}``, one at a time, then return ``"end"``."""
    for i in range(n):
        print(f"p{i}", flush=True)
        if pause:
            time.sleep(pause)
    return "end"


def warn_then(value: Any) -> Any:
    import warnings

    warnings.warn("careful", stacklevel=1)
    current_job().write_warning("from the writer")
    return value


def colored() -> str:
    text = "\x1b[31mred\x1b[0m"
    print(text)
    return text


def beyond_json() -> dict[Any, Any]:
    """What JSON cannot hold as it is: NaN, infinity, a tuple key."""
    return {"ratio": float("inf"), "n": float("nan"), (1, 2): "pair", 1: "one"}


def huge_int() -> int:
    return 10**5000


def count_then_fail(n: int) -> Iterator[int]:
    yield from range(n)
    raise RuntimeError("after the items")


def many_lines(n: int) -> str:
    """One string value of ``n`` lines (larger than a pipe holds)."""
    return "".join(f"line {i}\n" for i in range(n))
