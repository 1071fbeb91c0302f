"""What the event store refuses, and why: a clash, a broken file, a dead writer."""

from __future__ import annotations

from pathlib import Path


class LedgerError(Exception):
    """The ledger cannot do what was asked."""


class ConcurrencyError(LedgerError):
    """A stream was not at the version the writer expected: somebody appended first."""


class LedgerIntegrityError(LedgerError):
    """The ledger file does not match the broker's signatures: tampered, truncated or torn."""

    def __init__(self, path: str | Path, seq: int, detail: str) -> None:
        super().__init__(
            f"{path} fails its integrity check at seq {seq}: {detail};"
            f" run `micropay audit {path} --broker-key ...` for the whole story"
        )
        self.seq = seq


class LedgerWriterError(LedgerError):
    """The writer task died; nothing more can be appended by this process."""
