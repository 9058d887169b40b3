"""The cloud context: what a job needs to reach the cloud, captured when the job starts.

PowerShell jobs run in other processes, so the connection must travel with them
(``-AzContext``). A :class:`Context` is an immutable snapshot; a job takes the explicit
``context=`` or else the current one at start, and later changes never reach it. Inside the job,
:func:`current_context` returns that snapshot.

Contexts outlive a process as *references* (which credential type, tenant, client id, which
environment variable or certificate file holds the secret), never as secrets::

    set_context(ctx) ──► this process's current context ──► jobs started from now on
          │ (autosave on)                                     (pickled into the worker's
          ▼                                                    payload: in memory only)
    context.json (0600, written atomically) ──► any new process: get_context() loads it
          {"asjob_context": 1, "provider": "azure", "data": ctx.to_data()}

The file is ``$ASJOB_CONTEXT_FILE``, else ``context.json`` in the user's config directory.
Autosave is on while that file exists, so turning it on in one process turns it on for the user,
as ``Enable-AzContextAutosave`` does. A provider rebuilds its context type from the saved data
(the ``provider`` key names it in the ``asjob.providers`` entry-point group).
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar

import platformdirs

from .errors import BackendUnavailableError
from .private_files import check_private, make_private_directory

CONTEXT_FILE_ENV = "ASJOB_CONTEXT_FILE"
FORMAT_VERSION = 1
_FORMAT_KEY = "asjob_context"
_log = logging.getLogger("asjob.context")


class Context(abc.ABC):
    """An immutable snapshot of what a worker needs to reach a cloud; providers subclass it.

    ``provider`` names the entry point (group ``asjob.providers``) that rebuilds the context from
    :meth:`to_data`. Instances may hold live objects (a credential, cached access tokens) that
    reach local workers only inside the in-memory job payload; :meth:`to_data` holds references.
    """

    provider: ClassVar[str]

    @abc.abstractmethod
    def to_data(self) -> dict[str, Any]:
        """JSON-serialisable references to rebuild this context elsewhere; never a secret."""

    @classmethod
    @abc.abstractmethod
    def from_data(cls, data: Mapping[str, Any]) -> Context:
        """The context :meth:`to_data` described."""

    def for_job(self) -> Context:
        """What a job starting now takes with it (e.g. with a freshly brokered access token)."""
        return self


_UNSET: Any = object()
_lock = threading.RLock()
_current: Any = _UNSET  # _UNSET until set, or loaded from the autosave file on first use
_autosave: bool | None = None  # None: not looked at yet (the file's existence decides)
_job_context: ContextVar[Any] = ContextVar("asjob_job_context", default=None)


def context_file() -> Path:
    """Where autosaved contexts live: ``$ASJOB_CONTEXT_FILE``, else the user's config dir."""
    configured = os.environ.get(CONTEXT_FILE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_config_dir("asjob")) / "context.json"


# -- the current context -----------------------------------------------------------------------


def get_context() -> Any:
    """The current context of this process (``None`` if there is none).

    On first use in a process with autosave on, that is the autosaved context.
    """
    global _current
    with _lock:
        if _current is _UNSET:
            _current = _load_autosaved()
        return _current


def check_context(value: Any, what: str) -> None:
    """Raise ``TypeError`` unless ``value`` (``what`` names it) is a Context or ``None``."""
    if value is not None and not isinstance(value, Context):
        raise TypeError(
            f"{what} must be an asjob Context (e.g. from "
            f"asjob.providers.azure.connect_azure), not {type(value).__name__}"
        )


def set_context(context: Any) -> None:
    """Make ``context`` current for jobs started from now on (and save it, if autosave is on).
    ``None`` makes no context current."""
    global _current
    check_context(context, "set_context's context")
    with _lock:
        if _autosave_on():
            _write(context_file(), context)
        _current = context


def bind_process_context(context: Any) -> None:
    """A worker process takes its job's context as its own, without autosaving it."""
    global _current
    if context is not None:
        with _lock:
            _current = context


def resolve_context(explicit: Any) -> Any:
    """The context a starting job takes: an explicit one wins, else the current one."""
    context = explicit if explicit is not None else get_context()
    if isinstance(context, Context):
        context = context.for_job()
    return context


def current_context() -> Any:
    """Inside a job: the context it started with. Outside: the current context.

    Raises :class:`LookupError` when there is none.
    """
    context = _job_context.get()
    if context is None:
        context = get_context()
    if context is None:
        raise LookupError("no context: connect first (e.g. asjob.providers.azure.connect_azure)")
    return context


def bind_job_context(context: Any) -> None:
    """Make ``context`` what :func:`current_context` returns in this job's thread."""
    _job_context.set(context)


# -- autosave, save, import --------------------------------------------------------------------


def enable_context_autosave() -> Path:
    """Save the current context for the user from now on, in this and every new process.

    Returns the file; any process that starts later (a job, the CLI, a later CI step) picks the
    context up from it with no argument passing. Like ``Enable-AzContextAutosave``.
    """
    global _autosave
    with _lock:
        path = context_file()
        _write(path, get_context())
        _autosave = True
        return path


def disable_context_autosave() -> None:
    """Stop saving, and forget the saved context: new processes start without one.

    The current context of this process stays current. Like ``Disable-AzContextAutosave``.
    """
    global _autosave
    with _lock:
        _autosave = False
        path = context_file()
        with contextlib.suppress(FileNotFoundError):
            # Only a file can hold a saved context: whatever else is there (/dev/null, a pipe,
            # a directory) was never one, and is left as it is.
            if stat.S_ISREG(path.lstat().st_mode) or path.is_symlink():
                path.unlink()


def save_context(path: str | os.PathLike[str], context: Any = None) -> Path:
    """Write ``context`` (default: the current one) to ``path``, owner-only; references only."""
    with _lock:
        chosen = get_context() if context is None else context
        if chosen is None:
            raise LookupError("no context to save: connect first, or pass context=")
        target = Path(path).expanduser()
        _write(target, chosen)
        return target


def import_context(path: str | os.PathLike[str]) -> Context:
    """Read a context that :func:`save_context` wrote and make it current (``Import-AzContext``)."""
    context = _read(Path(path).expanduser())
    if context is None:
        raise ValueError(f"{path} holds no context")
    set_context(context)
    return context


def context_from_data(provider: str, data: Mapping[str, Any]) -> Context:
    """Rebuild a context of ``provider`` from the references :meth:`Context.to_data` gave."""
    from . import plugins

    try:
        found = plugins.provider_named(provider)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the saved context needs the {provider!r} provider, whose packages are not "
            f"installed ({exc.name}): pip install 'asjob[{provider}]'"
        ) from None
    if found is None:
        raise BackendUnavailableError(f"no provider named {provider!r} is installed")
    context: Context = found.context_from_data(data)
    return context


def _autosave_on() -> bool:
    global _autosave
    if _autosave is None:
        _autosave = context_file().exists()
    return _autosave


def _load_autosaved() -> Any:
    if not _autosave_on():
        return None
    path = context_file()
    try:
        return _read(path)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a broken file must not stop every job from starting
        _log.warning("ignoring the autosaved context in %s: %s", path, exc)
        return None


def _read(path: Path) -> Context | None:
    check_private(path, "the saved context")  # it names where access tokens are sent
    # O_NONBLOCK: a FIFO put where the file belongs must not block the open, and every job
    # start with it; anything but a regular file is refused below.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, encoding="utf-8") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        try:
            saved = json.load(file)
        except ValueError as exc:  # not JSON, or not UTF-8
            raise ValueError(f"{path} is not a saved asjob context: {exc}") from None
    version = saved.get(_FORMAT_KEY) if isinstance(saved, dict) else None
    if version is None:
        raise ValueError(f"{path} is not a saved asjob context")
    if type(version) is not int:
        raise ValueError(f"{path}: {_FORMAT_KEY} must be a format number, not {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer asjob: upgrade asjob")
    provider, data = saved.get("provider"), saved.get("data") or {}
    if provider is None:
        return None
    if not isinstance(provider, str):
        raise ValueError(f"{path}: provider must be a name, not {provider!r}")
    try:
        return context_from_data(provider, data)
    except (ValueError, TypeError) as exc:  # what the provider found wrong in the data
        raise ValueError(f"{path} holds a context that is not valid: {exc}") from None


def _write(path: Path, context: Any) -> None:
    if context is not None and not isinstance(context, Context):
        raise TypeError(
            f"only an asjob Context can be saved, not a {type(context).__name__} "
            "(e.g. connect with asjob.providers.azure.connect_azure)"
        )
    saved = {
        _FORMAT_KEY: FORMAT_VERSION,
        "provider": None if context is None else context.provider,
        "data": None if context is None else context.to_data(),
    }
    write_private_file(path, json.dumps(saved, indent=2, sort_keys=True) + "\n")


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, readable by the owner only (0600 in 0700).

    A reader never sees a half-written file: the text goes to a private temporary file in the
    same directory, reaches the disk, then is renamed over ``path``.
    """
    make_private_directory(path.parent)
    check_private(path, "the saved context")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
