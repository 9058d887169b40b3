"""Packing a :class:`~asjob.call.Call` for a worker process.

Functions travel by reference (module and qualified name), as :mod:`pickle` always sends them.
One twist: a module-level function decorated with ``@as_job`` is, at its module attribute, the
decorator's wrapper, so pickle refuses to send the undecorated ``__wrapped__`` by reference
("not the same object"). Such functions travel as "the wrapper at module.name, unwrapped".

What cannot be sent fails here, at the call, with a ``TypeError`` naming the culprit: never in the
worker, where it would be a hang or a job stuck in NotStarted.

Objects in a call learn where the pickle they are put in goes (:func:`payload_channel`), so that a
context holding live secrets puts them only in a payload a local worker receives over its private
in-memory channel::

    channel=Channel.LOCAL     a local worker (process kind), over its private socket: may hold
                              a credential object
    channel=Channel.NETWORK   a remote worker (dask kind), over a network: references and
                              brokered tokens only
    any other pickling        results, the store...: references only
"""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import Enum
from typing import Any

from ..call import Call, function_name


class Channel(Enum):
    """Where a job's payload goes, which decides what it may carry."""

    LOCAL = "local"
    """To a worker on this machine, over the private socket it was started with: never a file,
    the environment or a network. A live credential object may go this way."""
    NETWORK = "network"
    """To a worker elsewhere (a Dask scheduler and worker), across a network."""


_channel: ContextVar[Channel | None] = ContextVar("asjob_payload_channel", default=None)


def payload_channel() -> Channel | None:
    """Where the job payload being pickled in this thread goes; ``None`` when what is being
    pickled is not a job's payload (a result, a stream record, anything a user pickles)."""
    return _channel.get()


@contextmanager
def sending_over(channel: Channel) -> Iterator[None]:
    """Pickle for ``channel`` inside this block (see :func:`payload_channel`)."""
    token = _channel.set(channel)
    try:
        yield
    finally:
        _channel.reset(token)


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _unwrapped(module: str, qualname: str) -> Any:
    obj = _lookup(module, qualname)
    return getattr(obj, "__wrapped__", obj)


def _bind(function: Any, instance: Any) -> Any:
    return types.MethodType(function, instance)


class _CallPickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.MethodType) and isinstance(obj.__func__, types.FunctionType):
            # pickle sends a bound method as getattr(self, name); for a method decorated with
            # @as_job that attribute is the job-starting wrapper, not the method itself.
            try:
                same = getattr(obj.__self__, obj.__func__.__name__) == obj
            except Exception:
                same = False
            if not same:
                return _bind, (obj.__func__, obj.__self__)
        if isinstance(obj, types.FunctionType) and "<locals>" not in obj.__qualname__:
            module, qualname = obj.__module__, obj.__qualname__
            try:
                found = _lookup(module, qualname)
            except Exception:
                return NotImplemented
            if found is not obj and getattr(found, "__wrapped__", None) is obj:
                return _unwrapped, (module, qualname)
        return NotImplemented


def _dumps(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _CallPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads_call(payload: bytes) -> Call:
    call: Call = pickle.loads(payload)
    return call


def dumps_call(call: Call, *, channel: Channel) -> bytes:
    """Pickle ``call`` for a worker that ``channel`` reaches; raise ``TypeError`` naming what
    cannot be sent if that fails."""
    _check_main(call)
    with sending_over(channel):
        try:
            return _dumps(call)
        except Exception as exc:
            raise TypeError(_culprit(call, exc)) from exc


def _check_main(call: Call) -> None:
    module = getattr(call.fn, "__module__", None)
    main = sys.modules.get("__main__")
    if module != "__main__":
        return
    if getattr(main, "__file__", None) is None:
        raise TypeError(
            f"cannot send {function_name(call.fn)} to a worker process: it was defined "
            "interactively (__main__ has no file); define it in a module, or use kind='thread'"
        )
    spec_name = getattr(getattr(main, "__spec__", None), "name", None) or ""
    if spec_name == "__main__" or spec_name.endswith(".__main__"):
        # As multiprocessing, the fork server re-creates a script or a module run with -m,
        # not a package's __main__ (python -m pkg) nor a zip application's.
        raise TypeError(
            f"cannot send {function_name(call.fn)} to a worker process: it is defined in "
            f"{spec_name}, which worker processes cannot import; define it in another module "
            "of the package, or use kind='thread'"
        )


def _parameter_names(call: Call) -> list[str]:
    try:
        params = list(inspect.signature(call.fn).parameters.values())
    except (TypeError, ValueError):
        return []
    names = []
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            break
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
    return names


def _fails(obj: Any) -> Exception | None:
    try:
        _dumps(obj)
    except Exception as exc:
        return exc
    return None


def _culprit(call: Call, whole: Exception) -> str:
    fn = function_name(call.fn)
    prefix = "cannot send to a worker process"
    error = _fails(call.fn)
    if error is not None:
        owner = getattr(call.fn, "__self__", None)
        if owner is not None and not isinstance(owner, type) and _fails(owner) is not None:
            # A bound method travels with its instance: the instance's state is what fails.
            return (
                f"{prefix} the instance {function_name(call.fn)} is bound to (a "
                f"{type(owner).__qualname__}; pass what the method needs as arguments, or use "
                f"kind='thread'): {error}"
            )
        return (
            f"{prefix} the function {fn} (define it at module level, or use kind='thread'): {error}"
        )
    names = _parameter_names(call)
    for index, value in enumerate(call.args):
        error = _fails(value)
        if error is not None:
            label = f"'{names[index]}'" if index < len(names) else f"#{index}"
            return f"{prefix} argument {label} (position {index}) of {fn}: {error}"
    for key, value in call.kwargs.items():
        error = _fails(value)
        if error is not None:
            return f"{prefix} argument '{key}' of {fn}: {error}"
    if call.init is not None and _fails(call.init) is not None:
        return f"{prefix} the init function of {fn}: {_fails(call.init)}"
    if call.context is not None and _fails(call.context) is not None:
        return f"{prefix} the context of {fn}: {_fails(call.context)}"
    return f"{prefix} the call {fn}: {whole}"
