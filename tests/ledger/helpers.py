"""Small event factories for ledger tests."""

from __future__ import annotations

import sqlite3

from broker_ledger.format import GENESIS, link_hash
from protocol.broker_events import AccountOpened, SettlementRecorded


def opened(account: str, at: int = 1_000) -> AccountOpened:
    return AccountOpened(
        at=at, account=account, role="buyer", credit_limit=100, currency="EUR", token_nonce=b"n"
    )


def settled(account: str, amount: int, at: int = 2_000) -> SettlementRecorded:
    return SettlementRecorded(at=at, account=account, amount=amount, reference=f"ref-{amount}")


def relink(db: sqlite3.Connection) -> None:
    """What a forger without the key can redo: every link hash from the first event."""
    previous = GENESIS
    rows = db.execute(
        "SELECT seq, stream, version, type, schema, at, body FROM event_log ORDER BY seq"
    ).fetchall()
    for row in rows:
        previous = link_hash(previous, *row)
        db.execute("UPDATE events SET hash = ? WHERE seq = ?", (previous, row[0]))
