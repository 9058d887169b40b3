"""A call to run as a job: the function, its arguments, and what travels with them."""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


@dataclass
class Call:
    """``fn(*args, **kwargs)``, with ``init`` run first in the worker (``-InitializationScript``)
    and the cloud ``context`` the worker's ``current_context()`` returns."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: Callable[[], Any] | None = None
    context: Any = None

    def invoke(self) -> Any:
        if self.init is not None:
            self.init()
        return self.fn(*self.args, **self.kwargs)


def function_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


_SHOWN = (str, int, float, bool, type(None))


def _argument_text(value: Any) -> str:
    # Only plain scalars are shown: a structure (a dict, an SDK model) may carry a password
    # (a VM's osProfile.adminPassword), and the command is stored and printed.
    if isinstance(value, _SHOWN):
        return _repr.repr(value)
    return f"<{type(value).__name__}>"


def command_text(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The call as text, as ``Get-Job`` shows a job's command: ``create_vm('vm1', size=2)``;
    arguments other than plain scalars appear as their type, ``<VirtualMachine>``."""
    name = getattr(fn, "__name__", None) or function_name(fn)
    parts = [_argument_text(a) for a in args]
    parts += [f"{k}={_argument_text(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def map_command_text(fn: Callable[..., Any], items: list[Any]) -> str:
    """A fan-out's command: ``create_vm.map(['vm1', 'vm2', 'vm3', …])``."""
    name = getattr(fn, "__name__", None) or function_name(fn)
    shown = ", ".join(_argument_text(item) for item in items[:3])
    more = ", …" if len(items) > 3 else ""
    return f"{name}.map([{shown}{more}])"
