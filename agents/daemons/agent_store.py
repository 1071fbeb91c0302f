"""Durable state of a buyer's wallet and a vendor's accepted paywords, in SQLite.

Both are written in one transaction per batch, before anything the batch produced is
published: the buyer records the highest index it will reveal before the payword leaves,
and the vendor records the paywords it accepted before the receipt (or the service) does.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from agents.runtime.private_files import create_private_file
from protocol.events import (
    BuyerEvent,
    CertificateReceived,
    ChannelOpened,
    CommitmentAccepted,
    HeadReceived,
    LedgerHeadWitnessed,
    PaymentAccepted,
    PaywordSpent,
    RedemptionConfirmed,
    VendorEvent,
)
from protocol.ledger_heads import HeldHead, LedgerView

T = TypeVar("T")

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS channels (
    commitment_id BLOB PRIMARY KEY,
    vendor TEXT NOT NULL,
    seed BLOB NOT NULL,
    commitment BLOB NOT NULL,
    length INTEGER NOT NULL,
    spent INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS chains (
    commitment_id BLOB PRIMARY KEY,
    buyer TEXT NOT NULL,
    commitment BLOB NOT NULL,
    idx INTEGER NOT NULL,
    word BLOB NOT NULL,
    redeemed INTEGER NOT NULL,
    amount INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS served (
    commitment_id BLOB NOT NULL,
    idx INTEGER NOT NULL,
    item TEXT NOT NULL,
    amount INTEGER NOT NULL,
    PRIMARY KEY (commitment_id, idx)
) STRICT;
CREATE TABLE IF NOT EXISTS witnessed (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    topic TEXT NOT NULL,
    envelope BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS heads (
    scope BLOB PRIMARY KEY,
    seq INTEGER NOT NULL,
    head BLOB NOT NULL,
    at INTEGER NOT NULL,
    signature BLOB NOT NULL,
    topic TEXT NOT NULL,
    envelope BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS contradictions (
    id INTEGER PRIMARY KEY,
    verdict TEXT NOT NULL,
    seq INTEGER NOT NULL,
    head BLOB NOT NULL,
    at INTEGER NOT NULL,
    signature BLOB NOT NULL,
    topic TEXT NOT NULL,
    envelope BLOB NOT NULL
) STRICT;
"""
# ``heads`` keeps the broker's signed heads, bounded: the latest per commitment (scope =
# its id, from the receipts) and the latest overall (scope = x''). A receipt's head is
# proven by ``signature``, a broadcast's by its ``envelope`` (with ``topic``).
# ``contradictions`` keeps every statement that contradicted a head held (evidence), up
# to MAX_CONTRADICTIONS. ``witnessed`` is the unbounded table of earlier versions, read
# only for export.
MAX_CONTRADICTIONS: Final = 1_000
UPSERT_HEAD: Final = """
INSERT INTO heads VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (scope) DO UPDATE SET
    seq = excluded.seq, head = excluded.head, at = excluded.at,
    signature = excluded.signature, topic = excluded.topic, envelope = excluded.envelope
WHERE excluded.seq >= heads.seq OR excluded.at > heads.at
"""
INSERT_CONTRADICTION: Final = """
INSERT INTO contradictions (verdict, seq, head, at, signature, topic, envelope)
SELECT ?, ?, ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM contradictions) < ?
"""
HeadRow = tuple[bytes, int, bytes, int, bytes, str, bytes]
ContradictionRow = tuple[str, int, bytes, int, bytes, str, bytes, int]


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


@dataclass(frozen=True, slots=True)
class StoredChannel:
    """A buyer's channel as kept in the wallet."""

    commitment_id: bytes
    vendor: str
    seed: bytes
    commitment: bytes
    length: int
    spent: int


@dataclass(frozen=True, slots=True)
class StoredChain:
    """A vendor's chain as kept in its store."""

    commitment_id: bytes
    buyer: str
    commitment: bytes
    index: int
    word: bytes
    redeemed: int


class AgentStore:
    """One SQLite file per agent (WAL, synchronous=FULL), driven from one worker thread.

    Each call is a single hop to that thread, so a batch's transaction (BEGIN, the
    grouped statements, COMMIT and its fsync) costs one hand-off, not one per statement.
    """

    def __init__(self, connection: sqlite3.Connection, worker: ThreadPoolExecutor) -> None:
        self._db = connection
        self._worker = worker
        self.transactions = 0

    @classmethod
    async def open(cls, path: Path) -> AgentStore:
        """Open or create the store."""
        worker = ThreadPoolExecutor(1, thread_name_prefix="agent-store")

        def connect() -> sqlite3.Connection:
            create_private_file(path)
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.executescript(SCHEMA)
            return connection

        connection = await asyncio.get_running_loop().run_in_executor(worker, connect)
        return cls(connection, worker)

    async def _run(self, job: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, job)

    async def close(self) -> None:
        """Close the file."""
        await self._run(self._db.close)
        self._worker.shutdown(wait=True)

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
        spent: dict[bytes, int] = {}
        chains: list[tuple[bytes, str, bytes, bytes]] = []
        paid: dict[bytes, tuple[int, bytes, int]] = {}
        served: list[tuple[bytes, int, str, int]] = []
        redeemed: dict[bytes, int] = {}
        heads: list[HeadRow] = []
        contradictions: list[ContradictionRow] = []
        for event in events:
            match event:
                case CertificateReceived():
                    meta.append(("certificate", event.certificate))
                case ChannelOpened():
                    channels.append(
                        (
                            event.commitment_id,
                            event.vendor,
                            event.seed,
                            event.commitment,
                            event.length,
                        )
                    )
                case PaywordSpent():
                    spent[event.commitment_id] = max(spent.get(event.commitment_id, 0), event.index)
                case CommitmentAccepted():
                    chains.append((event.commitment_id, event.buyer, event.commitment, event.root))
                case PaymentAccepted():
                    _, _, amount = paid.get(event.commitment_id, (0, b"", 0))
                    paid[event.commitment_id] = (event.index, event.payword, amount + event.amount)
                    if event.item:
                        served.append((event.commitment_id, event.index, event.item, event.amount))
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
            (
                "UPDATE channels SET spent = MAX(spent, ?) WHERE commitment_id = ?",
                [(index, cid) for cid, index in spent.items()],
            ),
            ("INSERT OR IGNORE INTO chains VALUES (?, ?, ?, 0, ?, 0, 0)", list(chains)),
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

    async def channels(self) -> list[StoredChannel]:
        """The wallet's channels."""
        rows = await self._run(lambda: self._db.execute("SELECT * FROM channels").fetchall())
        return [
            StoredChannel(bytes(r[0]), r[1], bytes(r[2]), bytes(r[3]), r[4], r[5]) for r in rows
        ]

    async def chains(self) -> list[StoredChain]:
        """The vendor's chains."""
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT commitment_id, buyer, commitment, idx, word, redeemed FROM chains"
            ).fetchall()
        )
        return [StoredChain(bytes(r[0]), r[1], bytes(r[2]), r[3], bytes(r[4]), r[5]) for r in rows]

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

    async def totals(self) -> tuple[int, int]:
        """(amount accepted, number of chains) for the vendor."""
        row = await self._run(
            lambda: self._db.execute(
                "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM chains"
            ).fetchone()
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)
