"""A saved context file that is not what asjob wrote is refused with the file and what is
wrong in it named, never with a bare Python error, and never half-loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asjob.providers.azure import AzureContext, CredentialReference

import asjob

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000b7"


def saved(path: Path, **changes: Any) -> Path:
    """A context file as asjob writes it, with ``changes`` to its top level or its data."""
    asjob.save_context(path, context=AzureContext(subscription_id=SUBSCRIPTION))
    document = json.loads(path.read_text())
    for key, value in changes.items():
        if key in ("asjob_context", "provider", "data"):
            document[key] = value
        else:
            document["data"][key] = value
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"asjob_context": "abc"}, "asjob_context must be a format number"),
        ({"asjob_context": [2]}, "asjob_context must be a format number"),
        ({"provider": ["azure"]}, "provider must be a name"),
        ({"data": [1]}, "an Azure context must be a mapping"),
        ({"cloud": ["x"]}, "cloud must be a string"),
        ({"subscription_id": 7}, "subscription_id must be a string"),
        ({"credential": "default"}, "credential must be a mapping"),
        ({"credential": {"kind": "client_secret"}}, "needs tenant_id and client_id"),
        ({"credential": {"kind": "default", "client_id": 5}}, "credential client_id must be"),
        ({"polling_interval": "fast"}, "polling_interval must be zero or more seconds"),
    ],
)
def test_a_malformed_context_is_refused_naming_the_file_and_what_is_wrong(
    tmp_path: Path, changes: dict[str, Any], what: str
) -> None:
    path = saved(tmp_path / "context.json", **changes)

    with pytest.raises(ValueError, match=what) as caught:
        asjob.import_context(path)
    assert str(path) in str(caught.value)
    assert asjob.get_context() is None


@pytest.mark.parametrize("text", ["", "{", "\xff\xfe"])
def test_a_file_that_is_not_json_is_refused_naming_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "context.json"
    path.write_bytes(text.encode("latin-1"))

    with pytest.raises(ValueError, match="is not a saved asjob context") as caught:
        asjob.import_context(path)
    assert str(path) in str(caught.value)


def test_a_loop_of_links_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "context.json"
    path.symlink_to(tmp_path / "other.json")
    (tmp_path / "other.json").symlink_to(path)

    with pytest.raises(asjob.UnsafeFileError, match="its links cannot be followed"):
        asjob.import_context(path)


def test_a_reference_that_cannot_be_built_is_refused_when_made() -> None:
    # It used to load, then fail every job with a bare AssertionError (or worse, under -O).
    with pytest.raises(ValueError, match=r"missing: tenant_id, client_id, secret_variable"):
        CredentialReference("client_secret")
