"""The local ARM endpoint the Azure tests run against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from asjob.providers.azure.emulator import ArmEmulator

from asjob.session import Session

from . import azurefuncs as f


@pytest.fixture
def arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session: Session) -> Iterator[ArmEmulator]:
    """An emulator in this process, with the identity endpoint and saved contexts pointed at
    this test's own; the session closes before it, as no worker may outlive its endpoint."""
    f.isolate_contexts(tmp_path, monkeypatch)
    with f.emulator() as emulator:
        f.point_identity_at(emulator, monkeypatch)
        yield emulator
        session.close()
