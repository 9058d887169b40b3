"""The fork server's rehearsal of an SDK call: it must leave nothing behind to fork with."""

from __future__ import annotations

from . import azurefuncs as f

REHEARSE_IN_A_FRESH_INTERPRETER = """
import json, threading
import psutil
from asjob.providers.azure import warm_up

warm_up.rehearse()
warm_up.rehearse()  # and again: a fork server preloads more than once
print(json.dumps({
    "threads": threading.active_count(),
    "connections": [str(c) for c in psutil.Process().net_connections()],
}))
"""


def test_the_rehearsal_leaves_no_thread_or_connection_behind() -> None:
    left = f.run_python(REHEARSE_IN_A_FRESH_INTERPRETER)
    assert left == {"threads": 1, "connections": []}
