"""The fork server's rehearsal of an SDK call: it must leave nothing behind to fork with."""

from __future__ import annotations

import threading

import psutil
from asjob.providers.azure import warm_up


def test_the_rehearsal_leaves_no_thread_or_connection_behind() -> None:
    threads_before = threading.active_count()
    connections_before = len(psutil.Process().net_connections())

    warm_up.rehearse()
    warm_up.rehearse()  # and can run again (a fork server preloads more than once)

    assert threading.active_count() == threads_before
    assert len(psutil.Process().net_connections()) == connections_before
