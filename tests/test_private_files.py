"""Files that hold job data are refused where another user could replace them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import asjob
from asjob import context as asjob_context
from asjob.private_files import check_private, make_private_directory

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
NOBODY = 65534


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_000() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_directories_made_for_a_store_are_each_private_whatever_the_umask(
    tmp_path: Path, umask_000: None
) -> None:
    asjob.SQLiteStore(tmp_path / "state" / "a" / "b" / "jobs.db")
    made = [tmp_path / "state", tmp_path / "state" / "a", tmp_path / "state" / "a" / "b"]
    assert [_mode(d) for d in made] == [0o700] * 3


def test_a_store_in_a_directory_others_can_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(asjob.UnsafeFileError, match=f"its directory {shared} is writable"):
        asjob.SQLiteStore(shared / "jobs.db")
    assert not (shared / "jobs.db").exists()


def test_a_store_below_a_directory_others_can_write_to_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "mine").mkdir(parents=True)
    shared.chmod(0o777)  # another user could rename "mine" away and put theirs in its place
    with pytest.raises(asjob.UnsafeFileError, match=f"the directory {shared} above it"):
        asjob.SQLiteStore(shared / "mine" / "jobs.db")


def test_a_sticky_directory_above_is_no_danger(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "mine").mkdir(parents=True, mode=0o700)
    shared.chmod(0o1777)  # as /tmp: no one renames what is not theirs
    check_private(shared / "mine" / "jobs.db", "the job store")


@as_root
def test_a_store_in_another_users_directory_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(asjob.UnsafeFileError, match="owned by user 'nobody'"):
        asjob.SQLiteStore(theirs / "jobs.db")


@as_root
def test_another_users_write_ahead_log_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "jobs.db"
    asjob.SQLiteStore(store)
    planted = Path(f"{store}-wal")
    planted.write_bytes(b"")
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(asjob.UnsafeFileError, match=f"refusing the job store {planted}"):
        asjob.SQLiteStore(store)


@as_root
def test_another_users_saved_context_is_neither_imported_nor_picked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    saved = tmp_path / "context.json"
    saved.write_text('{"asjob_context": 1, "provider": null, "data": null}')
    os.chown(saved, NOBODY, NOBODY)  # it could name an endpoint of theirs to send tokens to
    with pytest.raises(asjob.UnsafeFileError, match="refusing the saved context"):
        asjob.import_context(saved)

    monkeypatch.setenv("ASJOB_CONTEXT_FILE", str(saved))
    monkeypatch.setattr(asjob_context, "_current", asjob_context._UNSET)
    monkeypatch.setattr(asjob_context, "_autosave", None)
    assert asjob.get_context() is None
    assert "refusing the saved context" in caplog.text


def test_a_context_is_not_saved_where_others_can_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(asjob.UnsafeFileError, match="writable by others"):
        asjob.save_context(shared / "context.json", context=_a_context())
    assert list(shared.iterdir()) == []


def test_a_private_directory_that_exists_is_left_as_it_is(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o750)
    make_private_directory(mine / "sub")
    assert _mode(mine) == 0o750 and _mode(mine / "sub") == 0o700


class _Plain(asjob.Context):
    provider = "plain"

    def to_data(self) -> dict[str, str]:
        return {}

    @classmethod
    def from_data(cls, data: object) -> _Plain:
        return cls()


def _a_context() -> asjob.Context:
    return _Plain()


def test_a_saved_context_that_is_a_directory_is_refused_as_one(tmp_path: Path) -> None:
    with pytest.raises(asjob.UnsafeFileError, match="it is a directory, not a regular file"):
        check_private(tmp_path, "the saved context")
    with pytest.raises(asjob.UnsafeFileError, match="it is a directory"):
        asjob.save_context(tmp_path, context=_a_context())


@pytest.mark.parametrize("what", ["named pipe", "directory"])
def test_disabling_autosave_leaves_what_is_not_a_saved_context_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    # As root, with ASJOB_CONTEXT_FILE=/dev/null (to save nowhere), it deleted /dev/null.
    path = tmp_path / "context.json"
    if what == "named pipe":
        os.mkfifo(path)
    else:
        path.mkdir()
    monkeypatch.setenv("ASJOB_CONTEXT_FILE", str(path))
    monkeypatch.setattr(asjob_context, "_autosave", None)

    asjob.disable_context_autosave()

    assert stat.S_ISFIFO(path.lstat().st_mode) if what == "named pipe" else path.is_dir()
