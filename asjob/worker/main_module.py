"""The caller's script, re-created in the fork server so that its functions and classes resolve
by name in workers (pickle sends a function defined in ``__main__`` as a reference).

As multiprocessing's spawn does, the server runs the script's top level as ``__mp_main__``, with
the caller's ``sys.argv``, and aliases it as ``__main__``; code under
``if __name__ == "__main__":`` does not run. A script without that guard would run its main
work again here — start its jobs a second time. So the re-run stops at the script's first use of
asjob's session (any start, get, wait...): what the script defined up to there is kept, which
is everything a job started at that point can refer to. A top level still running after the
deadline (waiting on a lock the caller holds, say) is cut off there the same way.

Outside the re-run, no job may start in the server or in a worker still loading its call
(:func:`starts_refused`): a module that starts jobs when imported would start them there again.
"""

from __future__ import annotations

import sys
import types
from multiprocessing import spawn

from .. import session
from ..errors import StartRefusedError
from .forking import TooSlow, import_limit, time_limit

# Why ``__mp_main__`` may lack a name a job needs, for the worker's error; None if complete.
incomplete_because: str | None = None


def starts_refused() -> StartRefusedError:
    """What a job start raises in the fork server, and in a worker loading its call."""
    return StartRefusedError(
        "cannot start a job while asjob's fork server or a worker process imports the "
        "modules of a job: a module that starts jobs when it is imported does so there "
        'again; start them in a function, or under `if __name__ == "__main__":`'
    )


def is_refused_start(exc: BaseException | None) -> bool:
    """Whether ``exc`` is how a start refused here ended a thread of the script."""
    return isinstance(exc, (_MainWorkReached, StartRefusedError))


class _MainWorkReached(BaseException):
    """Raised in the re-run script where it first uses asjob's session: its main work starts
    there. A BaseException, so the script's own ``except Exception`` does not swallow it."""


def recreate_caller_main(path: str | None, name: str | None, argv: list[str]) -> None:
    """Run the caller's main module (``name`` if it was run with ``-m``, else ``path``) as
    ``__mp_main__`` up to its first use of asjob. Never raises: a script that fails here fails
    only the jobs that need what it did not get to define."""
    global incomplete_because
    if not name and not path:
        return
    sys.argv[:] = argv
    refused_before = session.refuse_sessions(_MainWorkReached)
    try:
        # A top level that blocks here (on a lock the caller holds, on input) would keep the
        # server from ever starting a worker, and the caller's start from returning.
        with time_limit(import_limit()):
            if name:
                spawn._fixup_main_from_name(name)  # type: ignore[attr-defined]
            else:
                spawn._fixup_main_from_path(path)  # type: ignore[attr-defined]
    except BaseException as exc:
        incomplete_because = _keep_what_ran(exc, name or path or "")
    finally:
        session.refuse_sessions(refused_before)


def _keep_what_ran(exc: BaseException, script: str) -> str:
    """Install as ``__mp_main__`` what the script defined before ``exc`` ended it, and say why
    it ended there."""
    frame, line = None, 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "<module>" and (
            tb.tb_frame.f_globals.get("__name__") == "__mp_main__"
        ):
            frame, line = tb.tb_frame, tb.tb_lineno
            break
        tb = tb.tb_next
    if frame is not None:
        module = types.ModuleType("__mp_main__")
        module.__dict__.update(frame.f_globals)
        sys.modules["__main__"] = sys.modules["__mp_main__"] = module
    where = f"{script}, line {line}" if line else script
    if isinstance(exc, TooSlow):
        return (
            f"{script} was still running its top level after {import_limit():g} s when re-run "
            f"({where}: waiting on something?), so worker processes know only what it defines "
            f'before that; put the script\'s main code under `if __name__ == "__main__":`'
        )
    if isinstance(exc, _MainWorkReached):
        return (
            f'{script} starts its work at module level (no `if __name__ == "__main__":` '
            f"guard), so worker processes know only what it defines before its first use of "
            f"asjob ({where}); define job functions above that line, or put the script's "
            f"main code under the guard"
        )
    return (
        f"{script} raised {type(exc).__name__}: {exc} ({where}) when re-run to make its "
        f"functions known to worker processes, so they know only what it defines before that"
    )


def explain_missing(exc: BaseException) -> BaseException:
    """``exc`` — a job's call failing to unpickle in a worker — with the reason the script's
    names may be missing, when that is what went wrong."""
    if not isinstance(exc, AttributeError):
        return exc
    if "__main__" not in str(exc) and "__mp_main__" not in str(exc):
        return exc
    why = incomplete_because or (
        "the script, re-run here as __mp_main__, does not define it at its top level (is it "
        'defined under `if __name__ == "__main__":`, or made at run time?); define what a job '
        "needs at the script's top level, or in a module it imports"
    )
    explained = AttributeError(f"{exc}: {why}")
    explained.__cause__ = exc
    return explained
