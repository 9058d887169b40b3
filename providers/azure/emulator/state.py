"""Everything one emulator knows, in one object the HTTP handler reaches through its server.

    ArmEmulator ──owns──► EmulatorState ◄──reads── Handler (one thread per connection)
                            ├── settings     tunables, changeable while serving
                            ├── store        VMs and long-running operations (resources.py)
                            ├── tokens       identity endpoint (tokens.py)
                            ├── faults       HTTP faults to serve (faults.py)
                            ├── failures     operations to fail (faults.py)
                            └── log          answered requests and counters (requestlog.py)

Each part guards itself with its own lock. The only nesting is the store asking the failure
rules (a lock that never waits on anything) while holding its own, so nothing can deadlock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .faults import FailureRules, FaultInjector
from .requestlog import RequestLog
from .resources import VirtualMachineStore
from .tokens import TokenIssuer


@dataclass
class Settings:
    """Tunables read on every request, so changing one takes effect at once.

    ``operation_seconds``: how long a long-running operation stays ``InProgress`` (a VM tag
    ``emulator-operation-seconds`` overrides it per VM). ``page_size``: VMs per list page.
    ``poll_retry_after``: a ``Retry-After`` (may be fractional) on operation-status answers;
    ``None`` sends none, so the SDK sleeps its ``polling_interval``. ``token_lifetime``: seconds
    until a newly issued token expires.
    """

    operation_seconds: float = 1.0
    page_size: int = 50
    poll_retry_after: float | None = None
    token_lifetime: float = 3600.0

    def __post_init__(self) -> None:
        # A NaN due time would stall every operation queued behind it; int(inf) fails tokens.
        if not (math.isfinite(self.token_lifetime) and self.token_lifetime > 0):
            raise ValueError(f"token_lifetime must be a number > 0, got {self.token_lifetime}")
        if not (math.isfinite(self.operation_seconds) and self.operation_seconds >= 0):
            raise ValueError(
                f"operation_seconds must be a number >= 0, got {self.operation_seconds}"
            )
        if self.page_size < 1:
            raise ValueError(f"page_size must be >= 1, got {self.page_size}")
        retry_after = self.poll_retry_after
        if retry_after is not None and not (math.isfinite(retry_after) and retry_after >= 0):
            raise ValueError(f"poll_retry_after must be a number >= 0, got {retry_after}")

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` (JSON-ish values are coerced) all or nothing.

        ``ValueError`` on an unknown name or a bad value, leaving every setting as it was.
        """
        unknown = set(changes) - set(_COERCE)
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        try:
            coerced = {name: _COERCE[name](value) for name, value in changes.items()}
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(1e400)
            raise ValueError(f"invalid setting: {exc}") from None
        replace(self, **coerced)  # validates the combination without touching self
        for name, value in coerced.items():
            setattr(self, name, value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


_COERCE: dict[str, Callable[[Any], Any]] = {
    "operation_seconds": float,
    "page_size": int,
    "poll_retry_after": _optional_float,
    "token_lifetime": float,
}


@dataclass
class EmulatorState:
    settings: Settings
    max_logged_requests: int = 100_000
    store: VirtualMachineStore = field(init=False)
    tokens: TokenIssuer = field(init=False)
    faults: FaultInjector = field(default_factory=FaultInjector, init=False)
    failures: FailureRules = field(default_factory=FailureRules, init=False)
    log: RequestLog = field(init=False)

    def __post_init__(self) -> None:
        self.store = VirtualMachineStore(
            lambda: self.settings.operation_seconds, self.failures.match
        )
        self.tokens = TokenIssuer(lambda: self.settings.token_lifetime)
        self.log = RequestLog(self.max_logged_requests)

    def stats(self) -> dict[str, Any]:
        return (
            self.log.counts()
            | self.store.counts()
            | {"token_requests": self.tokens.issued, "faults_pending": len(self.faults.pending())}
        )
