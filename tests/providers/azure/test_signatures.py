"""The signatures of bound SDK methods, worked out once per function for job names."""

from __future__ import annotations

import inspect
from typing import Any

from asjob.providers.azure.operations import signature_of


class Group:
    def begin_create(self, resource_group_name: str, vm_name: str, body: Any = None) -> None:
        pass

    def passthrough(*args: Any, **kwargs: Any) -> None:
        pass


def test_a_bound_methods_signature_is_the_one_inspect_gives() -> None:
    group = Group()
    for method in (group.begin_create, group.passthrough):
        assert signature_of(method) == inspect.signature(method)
    assert signature_of(group.begin_create) is signature_of(Group().begin_create)
