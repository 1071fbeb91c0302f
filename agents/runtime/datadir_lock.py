"""One process at a time per data directory: a lock the kernel drops when its holder dies.

Two daemons on one directory both write its store, and the second one's start and exit
pull the files from under the first (its admin socket, its ledger's head). So every
agent, and every command that writes a data directory, holds ``DATA_DIR/lock``
(``flock``, exclusive, never blocking) from the moment it opens the directory's store to
the moment it closes it. The kernel releases the lock when the process exits, even by
SIGKILL, so there is no stale lock to clean up; the file itself stays (removing it would
let two processes lock two different files). It holds the holder's pid and kind
("vendor daemon"), for the message that refuses the next one. A daemon is refused at once
by another daemon, but waits a moment for a command (an offline status, say) to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from agents.runtime.private_files import FILE_MODE

LOCK_FILE: Final = "lock"
COMMAND_PATIENCE: Final = 5.0
"""Seconds a starting daemon waits for a command that holds its directory to finish."""


class DataDirBusyError(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, directory: Path, pid: int | None, holder: str) -> None:
        self.directory = directory
        self.pid = pid
        self.holder = holder
        who = f"a {holder}" if holder else "a micropay process"
        process = "pid unknown" if pid is None else f"pid {pid}"
        super().__init__(
            f"{directory} is in use: {who} is already running ({process});"
            " one micropay process at a time per data directory"
        )

    @property
    def daemon(self) -> bool:
        """Whether the holder is a daemon (it stays) rather than a command (it finishes)."""
        return self.holder.endswith("daemon")


class DataDirLock:
    """The held lock of one data directory; ``release`` (or exit) gives it up."""

    def __init__(self, directory: Path, descriptor: int) -> None:
        self.directory = directory
        self._descriptor = descriptor

    @classmethod
    def acquire(cls, directory: Path, holder: str) -> Self:
        """Take the directory's lock now, or raise ``DataDirBusyError`` naming the holder.

        ``holder`` says what takes it ("broker daemon", "buyer command"), for the message
        that refuses the next process.
        """
        descriptor = os.open(
            directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
        )
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, other = _holder_in(os.pread(descriptor, 256, 0))
            os.close(descriptor)
            raise DataDirBusyError(directory, pid, other) from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()} {holder}\n".encode(), 0)
        return cls(directory, descriptor)

    @classmethod
    async def acquire_for_daemon(
        cls, directory: Path, holder: str, patience: float = COMMAND_PATIENCE
    ) -> Self:
        """As ``acquire``, refused at once by a daemon, but a command is given time to finish.

        An operator's command (a status, an offline account opening) holds the directory
        for a moment; a daemon that starts just then waits for it instead of failing.
        """
        deadline = time.monotonic() + patience
        while True:
            try:
                return cls.acquire(directory, holder)
            except DataDirBusyError as busy:
                if busy.daemon or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.05)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._descriptor >= 0

    def release(self) -> None:
        """Give the lock up (idempotent); the pid is cleared first, while it is still held."""
        if self._descriptor < 0:
            return
        descriptor, self._descriptor = self._descriptor, -1
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, 0)
        os.close(descriptor)

    def __enter__(self) -> Self:
        """The lock, held for the ``with`` block."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Release at the end of the block."""
        self.release()


def lock_holder(directory: Path) -> tuple[int | None, str]:
    """The pid and kind of the lock's last holder (informational: it does not lock)."""
    try:
        return _holder_in((directory / LOCK_FILE).read_bytes()[:256])
    except OSError:
        return None, ""


def _holder_in(data: bytes) -> tuple[int | None, str]:
    pid, _, holder = data.decode(errors="replace").strip().partition(" ")
    return (int(pid) if pid.isdigit() else None), holder
