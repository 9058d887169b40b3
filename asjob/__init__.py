"""asjob: PowerShell-style background jobs for Python and cloud SDKs.

Start a call as a job (``@as_job`` or :func:`start_job`), then manage it with the PowerShell
verbs: :func:`get_job`, :func:`receive_job`, :func:`wait_job`, :func:`stop_job`,
:func:`remove_job`.
"""

from .context import (
    Context,
    current_context,
    disable_context_autosave,
    enable_context_autosave,
    get_context,
    import_context,
    save_context,
    set_context,
)
from .decorator import AsJobFunction, as_job
from .errors import (
    AsJobError,
    BackendUnavailableError,
    InvalidJobStateError,
    JobFailedError,
    JobNotFinishedError,
    JobNotFoundError,
    RemoteTraceback,
    StartRefusedError,
    StoreError,
    UnsafeFileError,
    WorkerLostError,
)
from .formatting import format_jobs
from .job import Job
from .records import ProgressRecord, StreamRecord
from .resuming import resume_job
from .session import use_store
from .states import JobState
from .store import MemoryStore, SQLiteStore
from .verbs import get_job, receive_job, remove_job, start_job, stop_job, wait_job
from .writer import JobWriter, current_job

__version__ = "0.1.0"

__all__ = [
    "AsJobError",
    "AsJobFunction",
    "BackendUnavailableError",
    "Context",
    "InvalidJobStateError",
    "Job",
    "JobFailedError",
    "JobNotFinishedError",
    "JobNotFoundError",
    "JobState",
    "JobWriter",
    "MemoryStore",
    "ProgressRecord",
    "RemoteTraceback",
    "SQLiteStore",
    "StartRefusedError",
    "StoreError",
    "StreamRecord",
    "UnsafeFileError",
    "WorkerLostError",
    "__version__",
    "as_job",
    "current_context",
    "current_job",
    "disable_context_autosave",
    "enable_context_autosave",
    "format_jobs",
    "get_context",
    "get_job",
    "import_context",
    "receive_job",
    "remove_job",
    "resume_job",
    "save_context",
    "set_context",
    "start_job",
    "stop_job",
    "use_store",
    "wait_job",
]
