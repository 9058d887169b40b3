"""The exception tree of asjob.

Every error asjob raises derives from :class:`AsJobError` and names the job it is about::

    AsJobError
    ├── JobNotFoundError (a LookupError)      no job with that id, name or instance id
    ├── JobNotFinishedError                   remove_job on a running job without force
    ├── InvalidJobStateError                  a verb that the job's state does not allow
    ├── JobFailedError                        a worker failure not rebuildable as the original
    │   └── WorkerLostError                   the worker process died (exit code or signal named)
    ├── BackendUnavailableError               a kind or provider whose package is missing
    ├── StartRefusedError                     a job started where none may start (see below)
    ├── StoreError                            the job store cannot be used
    └── UnsafeFileError (a PermissionError)   a store or saved context other users could replace

The job's own exceptions are *not* wrapped: receiving a Failed job raises the original
exception, chained to a :class:`RemoteTraceback` that carries the worker's traceback text.
"""

from __future__ import annotations


class AsJobError(Exception):
    """Base class of every asjob error. ``job_id`` names the job (``None`` when there is none)."""

    def __init__(self, message: str, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobNotFoundError(AsJobError, LookupError):
    """No job matches an exact id, instance id or non-wildcard name."""


class JobNotFinishedError(AsJobError):
    """The job is still running and the verb needs a finished job (``remove_job`` without force)."""


class InvalidJobStateError(AsJobError):
    """The verb is not allowed in the job's current state, or on this kind of job."""


class JobFailedError(AsJobError):
    """A job failed with an exception that cannot be rebuilt in the caller.

    Raised instead of the original when its type cannot be imported here, or when the exception or
    the job's result could not be pickled. ``type_name``, ``message`` and ``traceback_text`` keep
    what is known of the original.
    """

    def __init__(
        self,
        message: str,
        job_id: int | None = None,
        *,
        type_name: str = "",
        original_message: str = "",
        traceback_text: str = "",
    ) -> None:
        super().__init__(message, job_id)
        self.type_name = type_name
        self.original_message = original_message
        self.traceback_text = traceback_text


class WorkerLostError(JobFailedError):
    """The process that ran the job ended without reporting an outcome (killed, crashed)."""


class BackendUnavailableError(AsJobError):
    """A kind or provider needs a package that is not installed; the message names it."""


class RemoteTraceback(Exception):
    """The traceback text of an exception raised in a worker; set as the ``__cause__`` of the
    re-raised exception so both tracebacks print."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class StoreError(AsJobError):
    """The job store cannot be used: not a database, written by a newer asjob, no permission."""


class StartRefusedError(AsJobError):
    """A job was started where none may start: in a worker process still loading its job's
    call, or in the fork server. The usual cause is a module that starts jobs when it is
    imported: loading a job's function imports it there again."""


class UnsafeFileError(AsJobError, PermissionError):
    """A file that holds job data (the store, a saved context) is owned by another user, or
    lies in a directory others can write to: they could read it or put their own in its
    place, and asjob refuses to use it. See :mod:`asjob.private_files`."""
