"""The framed protocol between a session and its fork server: length-prefixed pickles over a
Unix socket pair. Only the two ends of that private socket pair ever read these frames.

Messages (tuples, first item the verb)::

    session ─► server   ("preload", [module names], sys.path)
                        ("start", job_id, payload, detached, environ, cwd, log_levels,
                         session_host)         (pid, start time) of the session that may take
                                               the job over, None for a detached job
                        ("go", job_id, run)    the job is Running (or, run=False, was stopped)
    server ─► session   ("started", job_id, pid, fork_time)
                        ("start_failed", job_id, message)
                        ("finished", job_id)   outcome recorded; the process may linger
                        ("handed_off", job_id) the session is to continue the job
                        ("exited", job_id, pid, wait_status)
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!I")


def frame(message: tuple[Any, ...]) -> bytes:
    """One message as bytes on the wire: a 4-byte length, then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def send(sock: socket.socket, message: tuple[Any, ...]) -> None:
    sock.sendall(frame(message))


class Frames:
    """Reassembles messages from bytes as they arrive, however the bytes were cut."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        """Add ``data``; return the messages it completed (possibly none)."""
        self._buffer += data
        messages = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            messages.append(pickle.loads(bytes(self._buffer[_HEADER.size : end])))
            del self._buffer[:end]
        return messages


class Reader:
    """Reads messages from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._frames = Frames()

    def receive(self) -> list[tuple[Any, ...]] | None:
        """Block for one ``recv`` and return the messages it completed (possibly none);
        ``None`` once the other end has closed."""
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            return None
        return self._frames.feed(chunk)
