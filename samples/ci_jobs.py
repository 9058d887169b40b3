"""The jobs samples/ci_pipeline.sh starts with ``asjob start ci_jobs:FUNCTION``.

A worker imports this module by name, so it lives in a file on the path (the pipeline puts
``samples/`` on ``PYTHONPATH``) rather than in the shell script.
"""

from __future__ import annotations

import time
import zlib

from asjob import current_job


def provision(name: str, size: int, seconds: float = 0.5) -> dict[str, object]:
    """Pretend to provision a machine: report progress, print a line, return its address."""
    if size < 1:
        raise ValueError(f"cannot provision {name}: size must be at least 1, not {size}")
    job = current_job()
    steps = ("allocate", "boot", "configure")
    for number, step in enumerate(steps, 1):
        job.write_progress(f"Provisioning {name}", step, 100 * number // len(steps))
        time.sleep(seconds / len(steps))
    print(f"{name} is up")
    return {"name": name, "size": size, "ip": f"10.0.0.{zlib.crc32(name.encode()) % 250 + 2}"}
