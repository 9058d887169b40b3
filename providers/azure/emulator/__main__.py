"""``python -m asjob.providers.azure.emulator``: serve a local ARM endpoint until SIGTERM/SIGINT
(or, with ``--until-stdin-closes``, until its standard input ends).

The first line on stdout is the base URL (flushed), so a parent process can start it with
``--port 0`` and read where it listens. A ``--host`` that is not loopback is refused (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from types import FrameType

from .emulator import ArmEmulator

STOP_CHECK_S = 0.1
"""How often the main thread looks for a stop request (a signal, or the end of input)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m asjob.providers.azure.emulator",
        description="A local ARM endpoint for the Compute virtual-machine operations.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--operation-seconds", type=float, default=1.0)
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--poll-retry-after", type=float, default=None)
    parser.add_argument("--token-lifetime", type=float, default=3600.0)
    parser.add_argument(
        "--until-stdin-closes",
        action="store_true",
        help="also stop when standard input ends (a parent that holds it has exited)",
    )
    args = parser.parse_args(argv)

    try:
        emulator = ArmEmulator(
            args.host,
            args.port,
            args.operation_seconds,
            args.page_size,
            poll_retry_after=args.poll_retry_after,
            token_lifetime=args.token_lifetime,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # A flag, not an Event: a handler that takes a lock (Event.set does) deadlocks when a
    # second signal (Ctrl-C's SIGINT, then the parent's SIGTERM) interrupts the first.
    stopping: list[str] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signal.Signals(signum).name)

    # Installed before the URL is printed: a parent may signal as soon as it has read it.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        emulator.start()
    except (OSError, OverflowError) as exc:  # OverflowError: a port beyond 65535
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if args.until_stdin_closes:
        threading.Thread(target=_stop_at_end_of_input, args=(stopping,), daemon=True).start()
    try:
        print(emulator.base_url, flush=True)
        while not stopping:
            time.sleep(STOP_CHECK_S)
    finally:
        emulator.stop()
    return 0


def _stop_at_end_of_input(stopping: list[str]) -> None:
    """Stop once standard input ends: the parent that holds its other end has exited, even
    if killed (nothing else would stop an emulator whose parent was SIGKILLed)."""
    # The descriptor, not sys.stdin: a thread blocked inside the buffered reader holds its
    # lock, and the interpreter aborts at exit when it cannot take it to close stdin.
    with contextlib.suppress(OSError):
        while os.read(sys.stdin.fileno(), 4096):
            pass
    stopping.append("end of input")


if __name__ == "__main__":
    sys.exit(main())
