"""Functions the tests run as jobs; a worker process imports them from here by name."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asjob import as_job, current_context, current_job

log = logging.getLogger("tests.jobfuncs")


def add(a: int, b: int) -> int:
    return a + b


def noop() -> None:
    return None


def identity(value: Any) -> Any:
    return value


def sleep_then(seconds: float, value: Any = "done") -> Any:
    time.sleep(seconds)
    return value


def count(n: int, pause: float = 0.0) -> Iterator[int]:
    for i in range(n):
        if pause:
            time.sleep(pause)
        yield i


def count_then_fail(n: int) -> Iterator[int]:
    yield from range(n)
    raise ValueError(f"failed after {n}")


def count_then_exit(n: int, status: Any) -> Iterator[int]:
    yield from range(n)
    sys.exit(status)


def exit_with(status: Any) -> None:
    sys.exit(status)


def interrupt() -> None:
    raise KeyboardInterrupt


def wait_for_file_then_yield(path: str, before: list[int], after: list[int]) -> Iterator[int]:
    yield from before
    deadline = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    yield from after


class CustomError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str = "boom") -> None:
    raise CustomError(message, code=42)


def fail_with_local_class() -> None:
    class LocalError(Exception):
        pass

    raise LocalError("defined in a function")


class Unpicklable:
    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __reduce__(self) -> Any:
        raise TypeError("Unpicklable objects cannot be pickled")


def return_unpicklable() -> Any:
    return Unpicklable()


class UnpicklableError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable() -> None:
    raise UnpicklableError("carries a lock")


def live_object() -> Any:
    return threading.Lock()


def chatty(tag: str, lines: int = 5) -> str:
    for i in range(lines):
        print(f"{tag} line {i}")
        log.warning("%s log %d", tag, i)
        time.sleep(0.001)
    return tag


def streams() -> str:
    job = current_job()
    job.write_progress("Deploying", "half way", 50)
    job.write_verbose("verbose text")
    job.write_debug("debug text")
    job.write_information("information text")
    job.write_warning("warning text")
    job.write_error("error text")
    warnings.warn("a python warning", DeprecationWarning, stacklevel=1)
    log.info("an info record")
    log.debug("a debug record")
    log.error("an error record")
    print("printed text")
    print("to stderr", file=sys.stderr)
    return "streams done"


def cooperative(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if current_job().stopping:
            return "noticed stop"
        time.sleep(0.01)
    return "not stopped"


def spawn_child_and_sleep(pid_file: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(pid_file, "w") as f:
        f.write(str(child.pid))
    time.sleep(60)


def spawn_escaping_child_and_sleep(pid_file: str) -> None:
    """Starts a child in a session of its own: it leaves the worker's process group."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    with open(pid_file, "w") as f:
        f.write(str(child.pid))
    time.sleep(60)


def write_to_descriptors() -> str:
    """Writes past ``sys.stdout``: through a command it runs, and straight to fds 1 and 2."""
    subprocess.run(["echo", "from a command"], check=True)
    os.write(1, b"raw stdout\n")
    os.write(2, "raw stderr, unfinished \u00e9".encode())
    return "done"


def write_pid_and_sleep(pid_file: str, seconds: float = 60) -> None:
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)


def kill_self(signum: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(5)


def hard_exit(code: int) -> None:
    os._exit(code)


def cwd() -> str:
    return os.getcwd()


def read_context() -> Any:
    return current_context()


@as_job
def decorated_double(x: int) -> int:
    """Doubles x."""
    return 2 * x


@as_job(kind="thread")
def decorated_thread(x: int) -> int:
    return x + 1


def fail_if_negative(x: int) -> int:
    """Ends at once either way (no pause, unlike maybe_fail)."""
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x * 10


def maybe_fail(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    time.sleep(0.05)
    return x * 10


def record_start(path: str, x: int, seconds: float = 0.2) -> int:
    with open(path, "a") as f:
        f.write(f"start {x} {time.monotonic()}\n")
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(f"end {x} {time.monotonic()}\n")
    return x


def block_on_socket(port: int) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port)) as conn:
        return conn.recv(1)


def bad_progress() -> None:
    current_job().write_progress("x", "y", 150)


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    def greet(self, name: str) -> str:
        return f"{self.greeting} {name}"

    @as_job
    def shout(self, name: str) -> str:
        return f"{self.greeting} {name}".upper()

    @as_job(kind="thread")
    def whisper(self, name: str) -> str:
        return f"{self.greeting} {name}".lower()


def consume(*args: Any, **kwargs: Any) -> None:
    """Takes anything, returns nothing (so nothing it was given is stored as a result)."""


def speak_from_a_thread(text: str) -> int:
    """Prints, logs and warns from a thread it starts; returns the job id that thread sees."""
    seen: list[int] = []

    def speak() -> None:
        print(text)
        log.warning("logged %s", text)
        seen.append(current_job().job_id)

    thread = threading.Thread(target=speak)
    thread.start()
    thread.join()
    return seen[0]


SHARED_POOL = ThreadPoolExecutor(max_workers=1)
"""Module-level, so it outlives jobs: its one thread starts at the first submit."""


def print_from_the_shared_pool(text: str) -> str:
    SHARED_POOL.submit(print, text).result()
    return "submitted"


def leave_a_thread_printing(go_file: str, done_file: str, text: str) -> str:
    """Starts a thread that prints ``text`` once ``go_file`` exists, after the job has ended."""

    def later() -> None:
        deadline = time.monotonic() + 30
        while not os.path.exists(go_file) and time.monotonic() < deadline:
            time.sleep(0.01)
        print(text)
        open(done_file, "w").close()

    threading.Thread(target=later, daemon=True).start()
    return "left"


def print_lines(count: int) -> int:
    for i in range(count):
        print(f"line {i}")
    return count


class KeyedClient:
    """A callable object whose repr shows its key, as some clients' do."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, *args: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"KeyedClient(key={self.key!r})"


async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0.01)
    return a + b


async def async_count(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


class LockedService:
    """A class whose instances cannot be pickled: they hold a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def work(self) -> str:
        return "worked"


def login(user: str, password: str, region_code: str = "weu") -> None:
    """Takes a password by position, as many functions do."""


def warn_then_fail() -> None:
    current_job().write_warning("a warning first")
    raise ValueError("failed after warning")


def rotate_password(password: str) -> None:
    """Takes a credential as its first (fan-out) argument."""


def trace_a_request(token: str, password: str) -> None:
    """Log and print what an SDK's network trace shows of a request it sends."""
    log.debug("Request headers: {'Authorization': 'Bearer %s', 'Accept': 'json'}", token)
    log.debug('Request body: {"adminPassword": "%s", "location": "westus"}', password)
    print(f"Authorization: Bearer {token}")
