"""The public names of asjob.providers.azure, and that they load lazily."""

from __future__ import annotations

import subprocess
import sys

import asjob.providers.azure as azure_provider


def test_all_is_sorted_and_complete() -> None:
    assert azure_provider.__all__ == sorted(azure_provider.__all__)
    for name in azure_provider.__all__:
        assert getattr(azure_provider, name) is not None, name
    assert "connect_azure" in azure_provider.__all__


def test_the_emulator_starts_without_importing_the_sdk() -> None:
    probe = (
        "import sys, asjob.providers.azure.emulator; "
        "print(any(m.startswith('azure.') for m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
