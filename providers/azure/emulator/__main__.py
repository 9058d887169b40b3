"""``python -m asjob.providers.azure.emulator``: serve a local ARM endpoint until SIGTERM/SIGINT.

The first line on stdout is the base URL (flushed), so a parent process can start it with
``--port 0`` and read where it listens. A ``--host`` that is not loopback is refused (exit 2).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .emulator import ArmEmulator


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

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before the URL is printed: a parent may signal as soon as it has read it.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        emulator.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(emulator.base_url, flush=True)
        stop.wait()
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
