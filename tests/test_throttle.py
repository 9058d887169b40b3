"""The throttle's queue: slots freed at the same time still start jobs in submission order."""

from __future__ import annotations

import threading

from asjob.throttle import Throttle


def test_jobs_released_at_once_launch_in_submission_order() -> None:
    throttle = Throttle(limit=2)
    launched: list[int] = []
    first_launching, first_may_finish = threading.Event(), threading.Event()

    def slow_launch() -> None:  # the first queued job's launch takes a while
        first_launching.set()
        first_may_finish.wait(5)
        launched.append(3)

    assert throttle.submit(1, lambda: None) and throttle.submit(2, lambda: None)
    assert not throttle.submit(3, slow_launch)
    assert not throttle.submit(4, lambda: launched.append(4))

    releasing_first = threading.Thread(target=throttle.release, args=(1,))
    releasing_first.start()
    assert first_launching.wait(5)
    throttle.release(2)  # frees a slot for job 4 while job 3 is still being launched
    first_may_finish.set()
    releasing_first.join(5)

    assert launched == [3, 4]
