"""A call to run as a job: the function, its arguments, and what travels with them."""

from __future__ import annotations

import functools
import inspect
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .redaction import is_secret_name, scrubbed

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
    """``fn``'s qualified name; a callable object's class name (its repr may hold its state)."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return str(name) if name else type(fn).__qualname__


_SHOWN = (str, int, float, bool, type(None))
_HIDDEN = "<redacted>"


def _argument_text(value: Any, keyword: str = "") -> str:
    # Only plain scalars are shown: a structure (a dict, an SDK model) may carry a password
    # (a VM's osProfile.adminPassword), and the command is stored and printed. Of those, a
    # keyword named like a credential is hidden, and credentials in a string are redacted.
    if keyword and is_secret_name(keyword):
        return _HIDDEN
    if isinstance(value, str):
        return _repr.repr(scrubbed(value))
    if isinstance(value, _SHOWN):
        return _repr.repr(value)
    return f"<{type(value).__name__}>"


def command_text(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The call as text, as ``Get-Job`` shows a job's command: ``create_vm('vm1', size=2)``;
    arguments other than plain scalars appear as their type, ``<VirtualMachine>``. A partial
    shows as the call it makes."""
    if isinstance(fn, functools.partial):
        return command_text(fn.func, (*fn.args, *args), {**fn.keywords, **kwargs})
    name = getattr(fn, "__name__", None) or function_name(fn)
    names = _positional_names(fn)
    parts = [_argument_text(a, names[i] if i < len(names) else "") for i, a in enumerate(args)]
    parts += [f"{k}={_argument_text(v, k)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _positional_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The names of ``fn``'s positional parameters, in order (a password passed by position
    is hidden as one passed by name is)."""
    try:
        parameters = signature_of(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return ()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in positional)


def signature_of(fn: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature(fn)``, remembered per function for a bound method: a generated SDK
    method's signature takes about a millisecond to work out (it unwraps the tracing
    decorator), and a script starting a hundred jobs asks for the same one a hundred times."""
    function = getattr(fn, "__func__", None)
    if function is None:
        return inspect.signature(fn)
    return _bound_signature(function)


@functools.lru_cache(maxsize=256)
def _bound_signature(function: Callable[..., Any]) -> inspect.Signature:
    # As binding does: the first positional parameter takes the instance; a ``*args`` stays.
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())
    if parameters and parameters[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        parameters = parameters[1:]
    return signature.replace(parameters=parameters)


def map_command_text(fn: Callable[..., Any], items: list[Any]) -> str:
    """A fan-out's command: ``create_vm.map(['vm1', 'vm2', 'vm3', …])``."""
    if isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None) or function_name(fn)
    names = _positional_names(fn)  # each item is the function's first argument
    first = names[0] if names else ""
    shown = ", ".join(_argument_text(item, first) for item in items[:3])
    more = ", …" if len(items) > 3 else ""
    return f"{name}.map([{shown}{more}])"
