"""Exceptions as data: encoded in a worker, rebuilt in the caller."""

from __future__ import annotations

import pytest

from asjob import JobFailedError, RemoteTraceback
from asjob.failures import decode_failure, encode_failure
from tests.jobfuncs import CustomError


def _raised(exc: BaseException) -> bytes:
    try:
        raise exc
    except BaseException as caught:
        return encode_failure(caught)


def test_rebuilt_without_calling_init() -> None:
    rebuilt = decode_failure(_raised(CustomError("bad", code=7)), job_id=3)
    assert type(rebuilt) is CustomError
    assert rebuilt.args == ("bad",) and rebuilt.code == 7  # type: ignore[attr-defined]
    assert isinstance(rebuilt.__cause__, RemoteTraceback)
    assert "CustomError: bad" in str(rebuilt.__cause__)


def test_a_type_that_cannot_be_imported_becomes_job_failed_error() -> None:
    class Local(Exception):
        pass

    rebuilt = decode_failure(_raised(Local("hidden")), job_id=9)
    assert isinstance(rebuilt, JobFailedError)
    assert rebuilt.job_id == 9
    assert rebuilt.type_name.endswith("Local")
    assert rebuilt.original_message == "hidden"
    assert "job 9" in str(rebuilt)


def test_unpicklable_attributes_are_left_out() -> None:
    error = CustomError("x", code=1)
    error.handle = lambda: None  # type: ignore[attr-defined]
    rebuilt = decode_failure(_raised(error))
    assert rebuilt.code == 1  # type: ignore[attr-defined]
    assert not hasattr(rebuilt, "handle")
    assert "left out: handle" in str(rebuilt.__cause__)  # said, where the details are


class SlottedError(Exception):
    __slots__ = ("__why", "where")

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.where, self.__why = "eastus", "quota"

    @property
    def why(self) -> str:
        return self.__why


def test_attributes_in_slots_come_back() -> None:
    rebuilt = decode_failure(_raised(SlottedError("x")))
    assert isinstance(rebuilt, SlottedError)
    assert (rebuilt.where, rebuilt.why) == ("eastus", "quota")  # a private one too


def test_builtin_errors_round_trip() -> None:
    with pytest.raises(KeyError, match="missing"):
        raise decode_failure(_raised(KeyError("missing")))
    rebuilt = decode_failure(_raised(FileNotFoundError(2, "No such file", "/x")))
    assert isinstance(rebuilt, FileNotFoundError) and rebuilt.filename == "/x"


def test_what_built_in_types_keep_outside_args_and_dict_comes_back() -> None:
    """Their ``__init__`` sets it, and a rebuild does not call ``__init__``."""
    exited = decode_failure(_raised(SystemExit(3)))
    stopped = decode_failure(_raised(StopIteration("last")))
    missing = decode_failure(_raised(ImportError("no module", name="azure.mgmt.compute")))
    denied = decode_failure(_raised(PermissionError(13, "Permission denied", "/etc/shadow")))

    assert isinstance(exited, SystemExit) and exited.code == 3
    assert isinstance(stopped, StopIteration) and stopped.value == "last"
    assert isinstance(missing, ImportError) and missing.name == "azure.mgmt.compute"
    assert isinstance(denied, PermissionError)
    assert (denied.errno, denied.strerror, denied.filename) == (
        13,
        "Permission denied",
        "/etc/shadow",
    )


def test_an_os_error_with_only_a_message_prints_as_it_did() -> None:
    rebuilt = decode_failure(_raised(ConnectionError("403 Client Error for url: https://x")))

    assert str(rebuilt) == "403 Client Error for url: https://x"
