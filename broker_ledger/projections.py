"""Read models rebuilt from events: balances, per-commitment redemption, invoices, scrip.

``fold`` is the one definition of what each event does to the read models; the projector
uses it to keep SQLite tables current and the auditor uses it to recompute them from
nothing. The projector writes its rows and its tracking position in one transaction, so
each event is applied exactly once even across crashes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiosqlite

from broker_ledger.scrip_models import ScripRow, fold_scrip
from protocol.broker_events import (
    AllowanceGranted,
    AllowanceReleased,
    AnyBrokerEvent,
    CommitmentRegistered,
    InvoiceIssued,
    PaywordsRedeemed,
    ReservationReleased,
    ScripDeposited,
    ScripMinted,
    ScripReturned,
    SettlementRecorded,
    StatementIssued,
)

PROJECTION: Final = "read-models"

TABLES: Final = """
CREATE TABLE IF NOT EXISTS balances (
    account TEXT PRIMARY KEY,
    debited INTEGER NOT NULL,
    credited INTEGER NOT NULL,
    reserved INTEGER NOT NULL,
    settled INTEGER NOT NULL,
    fees INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS chains (
    commitment_id BLOB PRIMARY KEY,
    buyer TEXT NOT NULL,
    vendor TEXT NOT NULL,
    length INTEGER NOT NULL,
    unit_value INTEGER NOT NULL,
    redeemed_index INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    reserved INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS invoice_lines (
    period TEXT NOT NULL,
    account TEXT NOT NULL,
    kind TEXT NOT NULL,
    counterparty TEXT NOT NULL,
    units INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    PRIMARY KEY (period, account, counterparty)
) STRICT;
CREATE VIEW IF NOT EXISTS open_commitments AS
    SELECT * FROM chains WHERE redeemed_index < length;
CREATE TABLE IF NOT EXISTS scrip (
    serial INTEGER PRIMARY KEY,
    vendor TEXT NOT NULL,
    buyer TEXT NOT NULL,
    value INTEGER NOT NULL,
    generation INTEGER,
    credited INTEGER NOT NULL,
    outstanding INTEGER NOT NULL,
    returned INTEGER NOT NULL,
    deadline INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS tracking (projection TEXT PRIMARY KEY, position INTEGER NOT NULL) STRICT;
"""


@dataclass(slots=True)
class BalanceRow:
    """What an account owes (debited), is owed (credited), has reserved, settled, paid in fees."""

    debited: int = 0
    credited: int = 0
    reserved: int = 0
    settled: int = 0
    fees: int = 0


@dataclass(slots=True)
class ChainRow:
    """How far one commitment has been redeemed."""

    buyer: str
    vendor: str
    length: int
    unit_value: int
    redeemed_index: int = 0
    amount: int = 0
    reserved: int = 0


@dataclass(slots=True)
class ReadModels:
    """The projected state; ``position`` is the last event folded in."""

    balances: dict[str, BalanceRow] = field(default_factory=dict)
    chains: dict[bytes, ChainRow] = field(default_factory=dict)
    lines: dict[tuple[str, str, str], tuple[str, int, int]] = field(default_factory=dict)
    position: int = 0
    dirty_accounts: set[str] = field(default_factory=set)
    dirty_chains: set[bytes] = field(default_factory=set)
    dirty_lines: set[tuple[str, str, str]] = field(default_factory=set)
    # --- scrip (docs/SCHEMES.md 3.10) ---
    scrip: dict[int, ScripRow] = field(default_factory=dict)
    dirty_scrip: set[int] = field(default_factory=set)
    """The broker's deposit grace: a serial's deadline is its ``expires`` plus this."""

    def balance(self, account: str) -> BalanceRow:
        """The row of an account, created empty on first use."""
        row = self.balances.get(account)
        if row is None:
            row = self.balances[account] = BalanceRow()
        self.dirty_accounts.add(account)
        return row


def fold(models: ReadModels, seq: int, event: AnyBrokerEvent) -> None:
    """Apply one event to the read models."""
    models.position = seq
    match event:
        case CommitmentRegistered():
            models.chains[event.commitment_id] = ChainRow(
                event.buyer, event.vendor, event.length, event.unit_value, reserved=event.reserved
            )
            models.dirty_chains.add(event.commitment_id)
            models.balance(event.buyer).reserved += event.reserved
        case PaywordsRedeemed():
            chain = models.chains[event.commitment_id]
            chain.redeemed_index = event.index
            chain.amount += event.amount
            released = min(chain.reserved, event.amount)
            chain.reserved -= released
            models.dirty_chains.add(event.commitment_id)
            buyer = models.balance(event.buyer)
            buyer.debited += event.amount
            buyer.reserved -= released
            models.balance(event.vendor).credited += event.amount
        case ReservationReleased():
            chain = models.chains[event.commitment_id]
            chain.reserved -= event.amount
            models.dirty_chains.add(event.commitment_id)
            models.balance(event.buyer).reserved -= event.amount
        case InvoiceIssued():
            for line in event.lines:
                key = (event.period, event.buyer, line.counterparty)
                models.lines[key] = ("invoice", line.units, line.amount)
                models.dirty_lines.add(key)
        case StatementIssued():
            for line in event.lines:
                key = (event.period, event.vendor, line.counterparty)
                models.lines[key] = ("statement", line.units, line.amount)
                models.dirty_lines.add(key)
            models.balance(event.vendor).fees += event.fee
        case SettlementRecorded():
            models.balance(event.account).settled += event.amount
        case (
            ScripMinted()
            | ScripDeposited()
            | ScripReturned()
            | AllowanceGranted()
            | AllowanceReleased()
        ):
            _fold_other_scheme(models, event)
        case _:
            pass


def _fold_other_scheme(
    models: ReadModels,
    event: ScripMinted | ScripDeposited | ScripReturned | AllowanceGranted | AllowanceReleased,
) -> None:
    """Scrip (docs/SCHEMES.md 3.10); a day's grant is reserved until the day ends (4.4)."""
    if isinstance(event, AllowanceGranted | AllowanceReleased):
        models.balance(event.buyer).reserved += allowance_reserved(event)
    else:
        fold_scrip(models, event)


def allowance_reserved(event: AllowanceGranted | AllowanceReleased) -> int:
    """How much a grant (or its release at the day's end) changes the buyer's reservation."""
    return event.reserved if isinstance(event, AllowanceGranted) else -event.amount


def fold_all(events: Iterable[tuple[int, AnyBrokerEvent]]) -> ReadModels:
    """Read models computed from nothing but the events."""
    models = ReadModels()
    for seq, event in events:
        fold(models, seq, event)
    return models


class Projector:
    """Keeps the read-model tables current, exactly once, on its own connection."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection
        self.models = ReadModels()

    @classmethod
    async def open(cls, path: str | Path) -> Projector:
        """Open the ledger file's read models (created empty when missing)."""
        connection = await aiosqlite.connect(path, isolation_level=None)
        await connection.execute("PRAGMA busy_timeout=10000")
        await connection.execute("PRAGMA synchronous=FULL")
        await connection.executescript(TABLES)
        projector = cls(connection)
        projector.models = await load(connection)
        return projector

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()

    async def catch_up(self, events: Iterable[tuple[int, AnyBrokerEvent]]) -> int:
        """Fold events after the tracking position and write them in one transaction."""
        count = 0
        for seq, event in events:
            if seq <= self.models.position:
                continue
            fold(self.models, seq, event)
            count += 1
        if count:
            await self._write()
        return count

    async def _write(self) -> None:
        models = self.models
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            await self._db.executemany(
                "INSERT OR REPLACE INTO balances VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (a, r.debited, r.credited, r.reserved, r.settled, r.fees)
                    for a in models.dirty_accounts
                    for r in (models.balances[a],)
                ],
            )
            await self._db.executemany(
                "INSERT OR REPLACE INTO chains VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c,
                        r.buyer,
                        r.vendor,
                        r.length,
                        r.unit_value,
                        r.redeemed_index,
                        r.amount,
                        r.reserved,
                    )
                    for c in models.dirty_chains
                    for r in (models.chains[c],)
                ],
            )
            await self._db.executemany(
                "INSERT OR REPLACE INTO invoice_lines VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (period, account, kind, counterparty, units, amount)
                    for period, account, counterparty in models.dirty_lines
                    for kind, units, amount in (models.lines[period, account, counterparty],)
                ],
            )
            await self._db.executemany(
                "INSERT OR REPLACE INTO scrip VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(serial, *models.scrip[serial].as_tuple()) for serial in models.dirty_scrip],
            )
            await self._db.execute(
                "INSERT OR REPLACE INTO tracking VALUES (?, ?)", (PROJECTION, models.position)
            )
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            self.models = await load(self._db)
            raise
        models.dirty_accounts.clear()
        models.dirty_chains.clear()
        models.dirty_lines.clear()
        models.dirty_scrip.clear()


async def load(connection: aiosqlite.Connection) -> ReadModels:
    """The read models as last committed (position included)."""
    models = ReadModels()
    for row in await connection.execute_fetchall("SELECT * FROM balances"):
        models.balances[row[0]] = BalanceRow(*row[1:])
    for row in await connection.execute_fetchall("SELECT * FROM chains"):
        models.chains[bytes(row[0])] = ChainRow(*row[1:])
    for row in await connection.execute_fetchall("SELECT * FROM invoice_lines"):
        models.lines[row[0], row[1], row[3]] = (row[2], row[4], row[5])
    for row in await connection.execute_fetchall("SELECT * FROM scrip"):
        models.scrip[int(row[0])] = ScripRow(*row[1:])
    async with connection.execute(
        "SELECT position FROM tracking WHERE projection = ?", (PROJECTION,)
    ) as cursor:
        found = await cursor.fetchone()
    models.position = int(found[0]) if found else 0
    return models
