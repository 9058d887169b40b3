"""Exceptions across process boundaries.

A worker's exception travels as data, not as a pickle of the live object: its type (module and
qualified name), ``args``, ``__dict__``, message and traceback text. The caller rebuilds it
without calling ``__init__`` (an ``__init__`` with extra required arguments is no obstacle) and
chains it to a :class:`~asjob.errors.RemoteTraceback`. When the type cannot be imported in the
caller, or nothing of it survives pickling, the caller gets a :class:`~asjob.errors.JobFailedError`
that still carries the type name, message and traceback text.
"""

from __future__ import annotations

import importlib
import pickle
import traceback
import types
from typing import Any

from . import redaction
from .errors import JobFailedError, RemoteTraceback

FORMAT_VERSION = 1


def _picklable(value: Any) -> bool:
    try:
        redaction.dumps(value)
    except Exception:
        return False
    return True


def _portable_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a if _picklable(a) else repr(a) for a in args)


def encode_failure(exc: BaseException) -> bytes:
    """Describe ``exc`` (with its traceback) as bytes that any process can decode."""
    cls = type(exc)
    attributes = dict(getattr(exc, "__dict__", {}))
    attributes.update(_slot_values(exc))
    attributes.update(_builtin_member_values(exc))
    state = {k: v for k, v in attributes.items() if _picklable(v)}
    left_out = sorted(set(attributes) - set(state))
    tb_text = "".join(traceback.format_exception(cls, exc, exc.__traceback__))
    if left_out:  # the caller's copy lacks them: say so where it looks for the details
        tb_text += (
            f"(asjob: attributes that cannot be pickled were left out: {', '.join(left_out)})\n"
        )
    description = {
        "version": FORMAT_VERSION,
        "module": cls.__module__,
        "qualname": cls.__qualname__,
        "args": _portable_args(exc.args),
        "state": state,
        "message": str(exc),
        "traceback": tb_text,
    }
    return redaction.dumps(description)  # it is stored: no request's credentials with it


def _slot_values(exc: BaseException) -> dict[str, Any]:
    """The values ``exc`` keeps in ``__slots__`` of its classes (not in its ``__dict__``)."""
    values: dict[str, Any] = {}
    for klass in type(exc).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name.startswith("__") and not name.endswith("__"):  # private: stored mangled
                name = f"_{klass.__name__.lstrip('_')}{name}"
            if name not in ("__dict__", "__weakref__") and hasattr(exc, name):
                values[name] = getattr(exc, name)
    return values


def _builtin_member_values(exc: BaseException) -> dict[str, Any]:
    """What built-in exception types keep in C members, set by their ``__init__`` (which a
    rebuild does not call): ``SystemExit.code``, ``OSError.errno`` and ``filename``,
    ``StopIteration.value``, ``ImportError.name``, ..."""
    values: dict[str, Any] = {}
    for klass in type(exc).__mro__:
        if klass.__module__ != "builtins":
            continue
        for name, attribute in vars(klass).items():
            if isinstance(attribute, types.MemberDescriptorType) and not name.startswith("__"):
                value = getattr(exc, name)
                # None is what an unset one reads as; set, it changes how the error prints
                # (an OSError would print "[Errno None] None: None -> None").
                if value is not None:
                    values[name] = value
    return values


def failure_type_name(blob: bytes) -> str:
    """``module.QualName`` of an encoded failure."""
    d = pickle.loads(blob)
    return f"{d['module']}.{d['qualname']}"


def _import_type(module: str, qualname: str) -> type[BaseException] | None:
    if "<locals>" in qualname:
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None


def decode_failure(blob: bytes, job_id: int | None = None) -> BaseException:
    """Rebuild the exception :func:`encode_failure` described, chained to its remote traceback."""
    d = pickle.loads(blob)
    tb_text: str = d["traceback"]
    cls = _import_type(d["module"], d["qualname"])
    exc: BaseException
    if cls is None:
        exc = _unrebuildable(d, job_id, "its type cannot be imported here")
    else:
        try:
            exc = cls.__new__(cls, *d["args"])
            exc.args = d["args"]
            for key, value in d["state"].items():
                try:
                    setattr(exc, key, value)
                except AttributeError:  # a read-only property: keep the value anyway
                    exc.__dict__[key] = value
        except Exception as error:
            exc = _unrebuildable(d, job_id, f"it cannot be rebuilt ({error})")
    exc.__cause__ = RemoteTraceback(tb_text)
    return exc


def _unrebuildable(d: dict[str, Any], job_id: int | None, why: str) -> JobFailedError:
    type_name = f"{d['module']}.{d['qualname']}"
    return JobFailedError(
        f"job {job_id} failed with {type_name}: {d['message']} ({why})",
        job_id,
        type_name=type_name,
        original_message=d["message"],
        traceback_text=d["traceback"],
    )
