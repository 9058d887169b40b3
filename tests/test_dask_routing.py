"""Where a ``dask`` job went (its routing), kept beside a provider's own resume data."""

from __future__ import annotations

import json

from asjob.kinds.dask import routing


def test_routing_reads_back() -> None:
    data = routing.routing("tcp://10.0.0.5:8786", (123, 1700000000.5))
    assert routing.read(data) == {
        "version": 1,
        "scheduler": "tcp://10.0.0.5:8786",
        "starter": [123, 1700000000.5],
    }
    assert routing.read(None) is None
    assert routing.read("not json") is None
    assert routing.read('{"provider": "azure"}') is None


def test_a_providers_resume_data_keeps_the_routing() -> None:
    current = routing.routing("tcp://10.0.0.5:8786", (123, 1.0))
    provided = json.dumps({"provider": "azure", "continuation_token": "t"})
    merged = routing.merged(current, provided)
    assert merged is not None
    assert json.loads(merged)["continuation_token"] == "t"
    assert json.loads(merged)["provider"] == "azure"
    assert routing.read(merged) == routing.read(current)


def test_what_cannot_be_merged_is_the_providers() -> None:
    assert routing.merged(None, '{"provider": "azure"}') == '{"provider": "azure"}'
    current = routing.routing("tcp://h:1", (1, 1.0))
    assert routing.merged(current, "plain text") == "plain text"
