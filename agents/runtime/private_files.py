"""Data at rest: directories only their owner may enter, files only their owner may read.

A buyer's wallet holds its chain seeds (its money), a vendor's store the paywords it is
owed, the broker's ledger every account. So every data directory is created 0700 and
every file in it 0600 at the moment it is created (``os.open``/``mkdir`` with the mode,
and the ``micropay`` process runs under umask 077), never chmod'ed afterwards. An agent
refuses to start, as PostgreSQL does, when its directory or a file in it is open to
group or others, or belongs to another user.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import BinaryIO, Final, TextIO

PRIVATE_UMASK: Final = 0o077
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
PUBLIC_FILES: Final = frozenset({"broker.pub.json"})
"""Files a data directory may hold that are meant to be handed out."""


class PermissionsError(Exception):
    """A data directory or a secret-bearing file is open to other users."""


def restrict_umask() -> None:
    """Make everything this process creates private (files 0600, directories 0700)."""
    os.umask(PRIVATE_UMASK)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700, or check an existing one."""
    if not path.exists():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    check_private_dir(path)
    return path


def check_private_dir(path: Path, *, files: bool = True) -> None:
    """Refuse a directory, or (with ``files``) an entry in it, that others can reach."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise PermissionsError(f"no directory at {path}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionsError(f"{path} is not a directory")
    _check(path, info, DIR_MODE)
    if not files:
        return
    problems = []
    for entry in sorted(path.iterdir()):
        if entry.name not in PUBLIC_FILES and not entry.is_dir():
            try:
                check_private_file(entry)
            except PermissionsError as exc:
                problems.append(exc)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise PermissionsError(
            f"{problems[0]} (and {len(problems) - 1} more files in {path}: chmod go-rwx {path}/*)"
        )


def check_private_file(path: Path) -> None:
    """Refuse a file that group or others can read or write (a missing file is fine)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    _check(path, info, FILE_MODE)


def _check(path: Path, info: os.stat_result, wanted: int) -> None:
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        raise PermissionsError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})"
        )
    if mode & 0o077:
        raise PermissionsError(
            f"{path} is open to group or others (mode {mode:04o}): chmod {wanted:o} {path}"
        )


def create_private_file(path: Path) -> None:
    """Create an empty file 0600 if it does not exist yet (e.g. before SQLite opens it)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def open_private(path: Path, *, append: bool = False) -> BinaryIO:
    """Open a file for binary writing, created 0600 if it is new."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, FILE_MODE), "ab" if append else "wb")


def open_private_text(path: Path) -> TextIO:
    """Open a text file for writing (truncated), created 0600 if it is new."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    return os.fdopen(os.open(path, flags, FILE_MODE), "w", newline="")


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` atomically with ``data``, the new file created 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    raw = data.encode() if isinstance(data, str) else data
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
