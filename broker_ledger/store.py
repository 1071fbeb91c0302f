"""The append-only, hash-linked event store on SQLite (through aiosqlite), with group commit.

``EventStore`` opens a ledger file and checks it before a signing broker appends: the
layout is ``store_schema``, reading and replay ``store_reader``, the group-commit writer
that signs every commit's head ``store_writer``, and the signed-tail check ``store_tail``.
The names other code uses are importable from here.

With a signer, every transaction also signs the head it leaves, so the last event of a
healthy ledger is always covered by the broker's signature. Opening a ledger with a
signer first checks the latest checkpoint's signature and the links after it: a ledger
with an unsigned tail, a missing event or a signature that does not verify is refused
before anything is appended or signed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import aiosqlite

from broker_ledger.codec import DEFAULT_CODEC, EventCodec
from broker_ledger.ledger_keys import ROTATED, SELECT_ROTATIONS, decode_rotations, key_history
from broker_ledger.store_errors import (
    ConcurrencyError,
    LedgerError,
    LedgerIntegrityError,
    LedgerWriterError,
)
from broker_ledger.store_records import Checkpoint, StoredEvent, StreamAppend
from broker_ledger.store_schema import FORMAT, SCHEMA, Synchronous, prepare
from broker_ledger.store_tail import check_signed_tail
from broker_ledger.store_writer import LedgerWriter
from protocol.crypto import AgentKeys
from protocol.messages import SignedHead
from protocol.trusted_keys import TrustedKeys

__all__ = [
    "FORMAT",
    "SCHEMA",
    "Checkpoint",
    "ConcurrencyError",
    "EventStore",
    "LedgerError",
    "LedgerIntegrityError",
    "LedgerWriterError",
    "StoredEvent",
    "StreamAppend",
    "Synchronous",
]


class EventStore(LedgerWriter):
    """Appends and reads broker events; one writer process per ledger file."""

    @classmethod
    async def open(  # noqa: PLR0913 - path, identity and tuning
        cls,
        path: str | Path,
        broker_id: str,
        *,
        signer: AgentKeys | None = None,
        synchronous: Synchronous = "FULL",
        codec: EventCodec = DEFAULT_CODEC,
        checkpoint_every: int = 10_000,
        unsigned_tail: bool = False,
    ) -> EventStore:
        """Open (creating if needed) a ledger file that belongs to ``broker_id``.

        ``unsigned_tail`` admits a ledger whose last events no signature covers (links
        still checked), only so that ``sign_tail`` can adopt them after an audit.

        A new file is created 0600 before SQLite opens it; SQLite gives its WAL and
        shared-memory files the same mode.
        """
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            await prepare(connection, synchronous)
            store = cls(
                connection,
                broker_id,
                codec=codec,
                signer=signer,
                checkpoint_every=checkpoint_every,
            )
            store.path = Path(path)
            await store._load_meta(signer)
            await store._load_keys(signer)
            await store._load_head()
            if signer is not None:
                await store._check_signed_tail(path, unsigned_tail=unsigned_tail)
        except BaseException:
            await connection.close()
            raise
        return store

    async def _load_meta(self, signer: AgentKeys | None) -> None:
        rows: dict[str, str] = {
            str(k): str(v)
            for k, v in await self._db.execute_fetchall("SELECT key, value FROM meta")
        }
        if not rows:
            meta = {"format": FORMAT, "broker_id": self.broker_id}
            if signer is not None:
                meta["broker_sign_key"] = signer.sign_key.hex()
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
            if signer is not None:
                await self._insert_checkpoint()  # the empty ledger is the broker's too
            await self._db.execute("COMMIT")
            return
        if rows.get("format") != FORMAT:
            raise LedgerError(f"not a {FORMAT} file (format {rows.get('format')!r})")
        if rows.get("broker_id") != self.broker_id:
            raise LedgerError(f"ledger belongs to broker {rows.get('broker_id')!r}")

    async def _load_keys(self, signer: AgentKeys | None) -> None:
        """The broker's keys by its rotations; a signer must hold the key in force."""
        rows = await self._db.execute_fetchall(
            "SELECT value FROM meta WHERE key = 'broker_sign_key'"
        )
        stored_key = next((str(row[0]) for row in rows), None)
        rotations = decode_rotations(
            await self._db.execute_fetchall(SELECT_ROTATIONS, (ROTATED,)), self.codec
        )
        if not rotations:
            if signer is not None and stored_key not in (None, signer.sign_key.hex()):
                raise LedgerError("ledger was signed with another broker key")
            key = signer.sign_key if signer is not None else bytes.fromhex(str(stored_key or ""))
            self.keys = TrustedKeys.pinned_to(self.broker_id, key)
            return
        last = rotations[-1][1]
        history = key_history(self.broker_id, rotations, last.new_sign_key if last else b"")
        if history.problems:
            seq, problem = history.problems[0]
            raise LedgerIntegrityError(self.path, seq or 0, problem)
        self.keys = history.keys
        current = self.keys.current
        if signer is not None and signer.sign_key != current:
            raise LedgerError(
                f"the ledger's key in force is {current.hex()[:16]}..., not the key given"
            )
        if stored_key != current.hex():
            await self.record_key(current)

    async def record_key(self, key: bytes) -> None:
        """Note the key in force in the meta table (what an audit without a key starts from)."""
        await self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('broker_sign_key', ?)", (key.hex(),)
        )

    async def _load_head(self) -> None:
        async with self._db.execute(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        if row is not None:
            self._seq, self._head = int(row[0]), bytes(row[1])
            self._durable = (self._seq, self._head)
        async with self._db.execute("SELECT MAX(id) FROM streams") as cur:
            row = await cur.fetchone()
        self._next_stream_id = (int(row[0]) if row and row[0] is not None else 0) + 1

    async def _check_signed_tail(self, path: str | Path, *, unsigned_tail: bool = False) -> None:
        """Refuse a ledger whose last event is not covered by a valid broker signature."""
        tail = await check_signed_tail(
            self, path, self.broker_id, self.keys, self._seq, unsigned_tail=unsigned_tail
        )
        self._unsigned_from = tail.unsigned_from
        if tail.signed is not None:
            self._signed, self._kept = tail.signed, tail.kept

    @property
    def unsigned_from(self) -> int:
        """The first event no broker signature covers (past the last event: none)."""
        return self._unsigned_from

    async def sign_tail(self, through: int) -> SignedHead:
        """Sign the head over events no signature covers (a ledger of an earlier version).

        ``through`` must be the last event: the operator states what the audit it ran
        has seen, and nothing appended since can slip in.
        """
        if self._signer is None:
            raise LedgerError("this store has no signing key")
        if through != self._seq:
            raise LedgerError(
                f"the ledger ends at {self._seq}, not {through}: audit it again and name its"
                " last event"
            )
        if self._unsigned_from > self._seq:
            raise LedgerError(f"nothing to sign: events up to {self._seq} are already signed")
        await self._db.execute("BEGIN IMMEDIATE")
        await self._insert_checkpoint()
        await self._db.execute("COMMIT")
        assert self._signed is not None  # noqa: S101 - a signer is present, checked above
        return self._signed
