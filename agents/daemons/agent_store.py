"""Durable state of a buyer's wallet and a vendor's accepted paywords, in SQLite.

Both are written in one transaction per batch, before anything the batch produced is
published: the buyer records its spend reservation (no payword above it leaves) before a
payword beyond the old one does, and the vendor records the paywords it accepted before
the receipt (or the service) does.
This module is what both share (the file and its thread, the meta table, the signed heads
kept, ``record``); ``WalletStore`` and ``VendorStore`` add what each reads back at start.
An open store holds its directory's lock: one agent process per data directory. Opened
for its owner's keys, it refuses a file whose certificate names other keys before
anything is written; a chain seed is written only sealed (``agents/runtime/sealing.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

from agents.daemons.scrip_rows import scrip_statements
from agents.daemons.store_owner import check_owner
from agents.daemons.store_schema import (
    INSERT_CONTRADICTION,
    MAX_CONTRADICTIONS,
    SCHEMA,
    UPSERT_HEAD,
    ContradictionRow,
    HeadRow,
)
from agents.runtime.datadir_lock import DataDirLock
from agents.runtime.private_files import create_private_file
from agents.runtime.sealing import SeedSealer
from protocol.crypto import AgentKeys
from protocol.events import (
    AllowanceCounted,
    BrokerKeyAccepted,
    BuyerEvent,
    CertificateReceived,
    ChannelOpened,
    CommitmentAccepted,
    HeadReceived,
    LedgerHeadWitnessed,
    PaymentAccepted,
    PaywordSpent,
    RedemptionConfirmed,
    SpendReserved,
    VendorEvent,
)
from protocol.ledger_heads import HeldHead, LedgerView

T = TypeVar("T")


def head_rows(
    event: LedgerHeadWitnessed | HeadReceived,
) -> tuple[list[HeadRow], list[ContradictionRow]]:
    """Where a signed head goes: kept (latest overall, latest of its commitment), or evidence."""
    if isinstance(event, LedgerHeadWitnessed):
        scope, row = b"", (event.seq, event.head, event.at, b"", event.topic, event.envelope)
    else:
        signed = event.signed
        scope, row = event.scope, (signed.seq, signed.head, event.at, signed.signature, "", b"")
    if event.verdict in ("contradiction", "regression"):
        return [], [(event.verdict, *row, MAX_CONTRADICTIONS)]
    if event.verdict == "stale" or (event.verdict == "seen" and not scope):
        return [], []
    return [(b"", *row), *([(scope, *row)] if scope else [])], []


def spend_rows(events: Sequence[object]) -> list[tuple[str, list[tuple[object, ...]]]]:
    """The statements that keep a batch's spend reservations (the buyer's ``spent``).

    Per chain, in event order: a payment's reservation only ever raises what the wallet
    holds, a hand-back (``SpendReserved``) sets it, and a payment after it raises it again.
    """
    grown: dict[bytes, int] = {}
    set_to: dict[bytes, int] = {}
    for event in events:
        match event:
            case PaywordSpent(commitment_id=cid, reserved=int(upto)) if cid in set_to:
                set_to[cid] = max(set_to[cid], upto)
            case PaywordSpent(commitment_id=cid, reserved=int(upto)):
                grown[cid] = max(grown.get(cid, 0), upto)
            case SpendReserved(commitment_id=cid, upto=upto):
                grown.pop(cid, None)
                set_to[cid] = upto
            case _:
                pass
    return [
        (
            "UPDATE channels SET spent = MAX(spent, ?) WHERE commitment_id = ?",
            [(upto, cid) for cid, upto in grown.items()],
        ),
        (
            "UPDATE channels SET spent = ? WHERE commitment_id = ?",
            [(upto, cid) for cid, upto in set_to.items()],
        ),
    ]


@dataclass(frozen=True, slots=True)
class StoredHead:
    """A broker-signed head an agent kept (``verdict`` set for a contradicting one)."""

    scope: bytes
    seq: int
    head: bytes
    at: int
    signature: bytes = b""
    topic: str = ""
    envelope: bytes = b""
    verdict: str = ""


class AgentStore:
    """One SQLite file per agent (WAL, synchronous=FULL), driven from one worker thread.

    Each call is a single hop to that thread, so a batch's transaction (BEGIN, the
    grouped statements, COMMIT and its fsync) costs one hand-off, not one per statement.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        worker: ThreadPoolExecutor,
        lock: DataDirLock,
        sealer: SeedSealer | None = None,
    ) -> None:
        self._db = connection
        self._worker = worker
        self._lock = lock
        self._sealer = sealer
        self.transactions = 0

    @classmethod
    async def open(
        cls,
        path: Path,
        lock: DataDirLock | None = None,
        *,
        owner: AgentKeys | None = None,
        sealer: SeedSealer | None = None,
    ) -> Self:
        """Open or create the store, holding its directory's lock (taken now if not given).

        ``owner``: the keys the store must belong to (``check_owner``). ``sealer``: what
        seals the chain seeds the store keeps; a store opened without one keeps none.
        """
        lock = lock or DataDirLock.acquire(path.parent, "micropay command")
        worker = ThreadPoolExecutor(1, thread_name_prefix="agent-store")

        def connect() -> sqlite3.Connection:
            create_private_file(path)
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.executescript(SCHEMA)
            return connection

        try:
            connection = await asyncio.get_running_loop().run_in_executor(worker, connect)
        except BaseException:
            worker.shutdown(wait=False)
            lock.release()
            raise
        store = cls(connection, worker, lock, sealer)
        try:
            await store._run(lambda: store._prepare(owner, path.parent))
        except BaseException:
            await store.close()
            raise
        return store

    def _prepare(self, owner: AgentKeys | None, directory: Path) -> None:
        """On the store's thread, once open: refuse a store of other keys than ``owner``."""
        if owner is not None:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'certificate'").fetchone()
            check_owner(None if row is None else bytes(row[0]), owner, directory)

    def _sealed(self, event: ChannelOpened) -> bytes:
        """The seed of a new chain as the store keeps it: sealed, never in plain text."""
        if self._sealer is None:
            msg = "this store was opened without a sealer: it keeps no chain seeds"
            raise TypeError(msg)
        return self._sealer.seal(event.commitment_id, event.seed)

    async def _run(self, job: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, job)

    async def close(self) -> None:
        """Close the file and give the directory up."""
        try:
            await self._run(self._db.close)
            self._worker.shutdown(wait=True)
        finally:
            self._lock.release()

    async def get(self, key: str) -> bytes | None:
        """A value from the meta table."""

        def read() -> bytes | None:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(read)

    async def put(self, key: str, value: bytes) -> None:
        """Store a value in the meta table (durably)."""
        await self._run(
            lambda: self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        )

    async def record(self, events: Sequence[BuyerEvent | VendorEvent]) -> None:  # noqa: C901
        """Persist what a batch of core events changed, in one transaction.

        Statements are grouped (one ``executemany`` each) and a chain's payments collapse
        to its highest index, so a batch costs a handful of round trips, not one per event.
        """
        meta: list[tuple[str, bytes]] = []
        channels: list[tuple[bytes, str, bytes, bytes, int]] = []
        chains: list[tuple[bytes, str, bytes, bytes]] = []
        paid: dict[bytes, tuple[int, bytes, int]] = {}
        served: list[tuple[bytes, int, str, int]] = []
        redeemed: dict[bytes, int] = {}
        heads: list[HeadRow] = []
        contradictions: list[ContradictionRow] = []
        counted: list[tuple[bytes, str, int, int]] = []
        for event in events:
            match event:  # the hot events first: one class check for most of a batch
                case PaymentAccepted():
                    _, _, amount = paid.get(event.commitment_id, (0, b"", 0))
                    paid[event.commitment_id] = (event.index, event.payword, amount + event.amount)
                    if event.item:
                        served.append((event.commitment_id, event.index, event.item, event.amount))
                case CertificateReceived():
                    meta.append(("certificate", event.certificate))
                case BrokerKeyAccepted():  # key rotation: the broker's new key, chained
                    meta.append(("broker_keys", event.history))
                case ChannelOpened():
                    channels.append(
                        (
                            event.commitment_id,
                            event.vendor,
                            self._sealed(event),
                            event.commitment,
                            event.length,
                        )
                    )
                case CommitmentAccepted():
                    chains.append((event.commitment_id, event.buyer, event.commitment, event.root))
                case AllowanceCounted():  # MiniPay: what the chain counted against the grant
                    counted.append((event.commitment_id, event.buyer, event.day, event.amount))
                case RedemptionConfirmed():
                    redeemed[event.commitment_id] = event.index
                case LedgerHeadWitnessed() | HeadReceived():
                    kept, evidence = head_rows(event)
                    heads.extend(kept)
                    contradictions.extend(evidence)
                case _:
                    pass
        batches: list[tuple[str, list[tuple[object, ...]]]] = [
            ("INSERT OR REPLACE INTO meta VALUES (?, ?)", list(meta)),
            ("INSERT OR IGNORE INTO channels VALUES (?, ?, ?, ?, ?, 0)", list(channels)),
            *spend_rows(events),
            ("INSERT OR IGNORE INTO chains VALUES (?, ?, ?, 0, ?, 0, 0)", list(chains)),
            ("INSERT OR IGNORE INTO allowance_chains VALUES (?, ?, ?, ?)", list(counted)),
            (
                (
                    "UPDATE chains SET idx = ?, word = ?, amount = amount + ?"
                    " WHERE commitment_id = ? AND idx < ?"
                ),
                [(i, word, amount, cid, i) for cid, (i, word, amount) in paid.items()],
            ),
            ("INSERT OR IGNORE INTO served VALUES (?, ?, ?, ?)", list(served)),
            (UPSERT_HEAD, list(heads)),
            (INSERT_CONTRADICTION, list(contradictions)),
            (
                "UPDATE chains SET redeemed = MAX(redeemed, ?) WHERE commitment_id = ?",
                [(index, cid) for cid, index in redeemed.items()],
            ),
            *scrip_statements(events, self._sealer),  # before the reply or the service
        ]
        batches = [(sql, rows) for sql, rows in batches if rows]
        if not batches:
            return

        def write() -> None:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in batches:
                    self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

        await self._run(write)
        self.transactions += 1

    async def restore_heads(self, view: LedgerView) -> dict[bytes, int]:
        """Put the kept heads back into a core's view; returns each commitment's head seq."""
        receipts = {}
        for kept in await self.heads():
            view.keep(HeldHead(kept.seq, kept.head, kept.at, kept.scope))
            if kept.scope:
                receipts[kept.scope] = kept.seq
        return receipts

    async def heads(self) -> list[StoredHead]:
        """The signed heads kept: the latest per commitment and the latest overall."""
        rows = await self._run(lambda: self._db.execute("SELECT * FROM heads").fetchall())
        return [
            StoredHead(
                bytes(r[0]), int(r[1]), bytes(r[2]), int(r[3]), bytes(r[4]), r[5], bytes(r[6])
            )
            for r in rows
        ]
