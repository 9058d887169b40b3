"""What a route hands back to the HTTP layer: a reply, or an ARM error raised as an exception.

Routes never touch the socket. They return a :class:`Reply` or raise :class:`ArmError`, and the
handler in ``server.py`` is the one place that turns either into bytes, so every error the SDK
sees has the ARM shape ``{"error": {"code": ..., "message": ...}}`` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """An HTTP answer; ``body=None`` sends an empty body (still with ``Content-Length: 0``)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ArmError(Exception):
    """An ARM error answer: ``status`` with the body ``{"error": {"code", "message"}}``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def reply(self) -> Reply:
        return Reply(
            self.status,
            {"error": {"code": self.code, "message": self.message}},
            self.headers,
        )


def retry_after_value(seconds: float) -> str:
    """Format seconds for a ``Retry-After`` header: ``"2"`` for whole numbers, else ``"0.25"``."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))
