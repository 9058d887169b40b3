"""Decorate a function, start many jobs, wait for them, receive their results.

Run: python samples/background_jobs.py
"""

from __future__ import annotations

import random
import time

import asjob
from asjob import as_job, current_job


@as_job(throttle_limit=4)
def build_image(name: str) -> dict[str, object]:
    """Pretend to build a machine image, reporting progress as it goes."""
    job = current_job()
    for step, percent in (("download", 30), ("configure", 60), ("seal", 100)):
        time.sleep(random.uniform(0.05, 0.2))
        job.write_progress(f"Building {name}", step, percent)
    print(f"{name} built")
    return {"image": name, "size_gb": random.randint(10, 40)}


def main() -> None:
    started = time.monotonic()
    jobs = [build_image(f"image-{i}") for i in range(8)]
    print(asjob.format_jobs(jobs))
    asjob.wait_job(jobs, timeout=60)
    print()
    print(asjob.format_jobs(jobs))
    for job in jobs:
        result = job.receive()
        print(f"{job.name}: {result}")
    failed = [j for j in jobs if str(j.state) != "Completed"]
    asjob.remove_job(jobs)
    print(f"{len(jobs)} jobs in {time.monotonic() - started:.2f}s, {len(failed)} not completed")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
