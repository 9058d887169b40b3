"""Files that hold job data are the user's alone: how asjob makes their directories, and
when it trusts a file it finds.

The store holds pickles, and a saved context names the endpoint that access tokens are sent
to: whoever can put their own file in place of either runs code as, or takes tokens from, the
user who reads it. So before asjob reads or writes one (:func:`check_private`):

- the file, if it exists, is a regular file (or a link to one) owned by this user;
- its directory is owned by this user, and no one else can write to it;
- no directory above is writable by others unless it is sticky (as ``/tmp`` is): else the
  directories below it could be renamed away and replaced.

"No one else can write" allows a group-writable directory whose group is this user's own
(a user private group: named after the user, no one else in it; the umask 002 of
systems that give each user one makes such directories). ``root`` is trusted
as an owner of the directories above, as the system's own. Directories asjob creates are
made 0700 each, whatever the umask (:func:`make_private_directory`).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from .errors import UnsafeFileError


def make_private_directory(directory: Path) -> None:
    """Create ``directory`` and any missing parents, each readable by the owner only."""
    missing: list[Path] = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for created in reversed(missing):
        try:
            created.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process: checked like any other
        created.chmod(0o700)  # mkdir's mode passes through the umask


def check_private(path: Path, what: str) -> None:
    """Raise :class:`~asjob.errors.UnsafeFileError` unless ``path`` (``what`` names it, e.g.
    "the job store") is safe from other users, as the module doc says."""
    try:
        target = path.resolve()
    except (OSError, RuntimeError) as exc:  # a loop of links (RuntimeError before 3.13)
        raise UnsafeFileError(
            f"refusing {what} {path}: its links cannot be followed ({exc})"
        ) from None
    for checked in dict.fromkeys([path.absolute(), target]):  # a link, and its target
        _check(checked, what)


def _check(path: Path, what: str) -> None:
    me = os.geteuid()
    try:
        status = path.lstat()
    except FileNotFoundError:
        pass
    else:
        if not (stat.S_ISREG(status.st_mode) or stat.S_ISLNK(status.st_mode)):
            # Before anything opens it: a device (as root, /dev/null) would have its mode
            # changed and a journal made beside it.
            raise UnsafeFileError(
                f"refusing {what} {path}: it is {_kind_of(status.st_mode)}, not a regular file"
            )
        if status.st_uid != me:
            _refuse(what, path, f"it is owned by {_user(status.st_uid)}, not by you")
    directory = path.parent
    status = directory.stat()
    if status.st_uid != me:
        _refuse(what, path, f"its directory {directory} is owned by {_user(status.st_uid)}")
    if _others_can_write(status):
        _refuse(what, path, f"its directory {directory} is writable by others")
    for above in directory.parents:
        status = above.stat()
        if status.st_uid not in (me, 0):
            owner = _user(status.st_uid)
            _refuse(what, path, f"the directory {above} above it is owned by {owner}")
        if _others_can_write(status) and not status.st_mode & stat.S_ISVTX:
            _refuse(what, path, f"the directory {above} above it is writable by others")


def _kind_of(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "a special file")


def _others_can_write(status: os.stat_result) -> bool:
    if status.st_mode & stat.S_IWOTH:
        return True
    return bool(status.st_mode & stat.S_IWGRP) and not _own_group(status.st_gid)


def _own_group(gid: int) -> bool:
    """Whether ``gid`` is this user's private group: named after them, no one else in it."""
    try:
        group = grp.getgrgid(gid)
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no entry to tell: not known to be private
        return False
    return group.gr_name == name and set(group.gr_mem) <= {name}


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name!r}"
    except KeyError:
        return f"uid {uid}"


def _refuse(what: str, path: Path, why: str) -> None:
    raise UnsafeFileError(
        f"refusing {what} {path}: {why}, so another user could read it or put their own in its "
        "place. Keep it in a directory of your own that only you can write to (chmod go-w)"
    )
