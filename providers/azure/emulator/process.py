"""The emulator in a process of its own, for samples and benchmarks: nothing it does then
shares an interpreter lock with the code it serves."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

START_TIMEOUT_S = 30.0


@contextmanager
def emulator_process(operation_seconds: float = 1.0) -> Iterator[str]:
    """Start ``python -m asjob.providers.azure.emulator`` on a free loopback port; yield its
    base URL; stop it (and wait for it) on the way out."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asjob.providers.azure.emulator",
            "--port",
            "0",
            "--operation-seconds",
            str(operation_seconds),
            "--until-stdin-closes",  # so it ends with this process, however that ends
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S)
        url = process.stdout.readline().strip() if ready else ""
        if not url.startswith("http://"):
            raise RuntimeError("the local ARM endpoint did not start")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
