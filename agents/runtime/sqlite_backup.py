"""A consistent copy of a live SQLite file, through SQLite's online backup API.

``cp`` of a WAL database while its writer runs copies the main file without the commits
still in its ``-wal`` file (and may catch a page mid-write): a copy that opens and even
audits, but has lost the latest commits. ``sqlite3.Connection.backup`` copies every page
inside one read transaction, so the copy is the database exactly as of one commit, WAL
frames included, while the writer carries on. The copy is a single self-contained file
(rollback journal, no ``-wal``), created 0600 and never over an existing file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from agents.runtime.private_files import FILE_MODE, check_private_dir, make_private_dir


class BackupError(Exception):
    """The copy could not be made (no source, the destination exists, SQLite refused)."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    """Where the copy went, how big it is, and SQLite's verdict on its pages."""

    path: Path
    size: int
    integrity: str

    @property
    def intact(self) -> bool:
        """Whether ``PRAGMA integrity_check`` found nothing wrong."""
        return self.integrity == "ok"


def destination(given: str, source_name: str) -> Path:
    """The file to write: ``given`` itself, or a time-stamped name inside a directory.

    A directory (an existing one, or ``given`` ending in a slash) is created 0700 and
    refused when others can enter it; a file's missing parent is created 0700.
    """
    target = Path(given)
    if target.is_dir() or given.endswith(os.sep):
        make_private_dir(target)
        check_private_dir(target, files=False)
        name = Path(source_name)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return target / f"{name.stem}-{stamp}{name.suffix}"
    if not target.parent.exists():
        make_private_dir(target.parent)
    return target


def backup_file(source: Path, target: Path) -> BackupResult:
    """Copy the database at ``source`` to the new file ``target`` and check the copy."""
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError as exc:
        raise BackupError(f"{target} exists; refusing to overwrite it") from exc
    except OSError as exc:
        raise BackupError(f"cannot create {target}: {exc.strerror}") from exc
    try:
        integrity = _copy(source, target)
        _sync(target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return BackupResult(target, target.stat().st_size, integrity)


def _copy(source: Path, target: Path) -> str:
    try:
        with (
            contextlib.closing(
                sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
            ) as live,
            contextlib.closing(sqlite3.connect(target)) as copy,
        ):
            live.backup(copy)  # all pages in one step: one read transaction, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # the copy is one file, no -wal
            rows = copy.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {source}: {exc}") from exc
    return "; ".join(str(row[0]) for row in rows)


def _sync(path: Path) -> None:
    """The copy and its directory entry on disk before the command says it is done."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
