"""The tables of an agent's SQLite store, and the statements that keep signed heads.

Buyers and vendors share one schema (a wallet leaves ``chains`` empty, a vendor
``channels``), so ``micropay witness`` reads either file the same way.
"""

from __future__ import annotations

from typing import Final

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
CREATE TABLE IF NOT EXISTS allowance_chains (
    commitment_id BLOB PRIMARY KEY,
    buyer TEXT NOT NULL,
    day INTEGER NOT NULL,
    amount INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS spent_scrip (
    serial INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    buyer TEXT NOT NULL,
    item TEXT NOT NULL,
    price INTEGER NOT NULL,
    spent BLOB NOT NULL,
    change BLOB NOT NULL,
    expires INTEGER NOT NULL,
    confirmed INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS scrip_refused (
    serial INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    buyer TEXT NOT NULL,
    item TEXT NOT NULL,
    price INTEGER NOT NULL,
    spent BLOB NOT NULL,
    change BLOB NOT NULL,
    expires INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (serial, generation)
) STRICT;
CREATE TABLE IF NOT EXISTS scrip (
    serial INTEGER PRIMARY KEY,
    vendor TEXT NOT NULL,
    generation INTEGER NOT NULL,
    value INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    sealed BLOB NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS scrip_secrets (
    vendor TEXT NOT NULL,
    ref BLOB NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (vendor, ref)
) STRICT;
CREATE TABLE IF NOT EXISTS scrip_pending (
    serial INTEGER PRIMARY KEY,
    generation INTEGER NOT NULL,
    vendor TEXT NOT NULL,
    item TEXT NOT NULL,
    price INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS scrip_orders (
    request BLOB PRIMARY KEY,
    vendor TEXT NOT NULL,
    value INTEGER NOT NULL,
    at INTEGER NOT NULL
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
# ``channels.seed`` is the chain seed sealed (``agents/runtime/sealing.py``, 61 bytes); a
# 32-byte value is a plain seed an earlier version wrote, sealed when its owner opens it.
# ``channels.spent`` is the buyer's spend reservation: no payword above it has left the
# wallet. A paying session keeps it up to ``reserve_ahead`` units above what it paid and
# brings it back to what it paid when it ends; after a crash, the units in between count
# as paid and are never paid again. A wallet written before reservations holds the highest
# index spent, which is a valid reservation: it needs no migration.
# ``allowance_chains`` (a vendor that takes daily grants, docs/SCHEMES.md 4.3): each chain it
# accepted, the UTC day it did, and the value it counted against the buyer's grant (0: the
# broker registered it); the day's rows rebuild ``today(buyer)`` after a restart.
# ``spent_scrip`` is a vendor's spent set (docs/SCHEMES.md 3.9): per serial the highest
# generation it accepted, that payment's exact bytes and change, and ``confirmed``, the
# generation the broker credited (-1: none yet). A row is written before the payment is
# served and goes at the serial's deadline. ``scrip_refused`` keeps a copy of each record
# whose deposit the broker refused for good (an ``Error`` ``deposit``), with the broker's
# reason and when (ms): it is never deposited again, and never deleted by the vendor; it
# is for the operator (``micropay vendor status``). A wallet keeps its scrip in ``scrip`` (the
# ``TaggedScrip`` bytes sealed, per serial its live generation), the customer secrets in
# ``scrip_secrets`` (sealed) and in ``scrip_pending`` the payment it sent and has had no
# answer to, written before it leaves. ``scrip_orders`` holds each ``scrip?`` the broker has
# not answered (request id, vendor, value, when first asked in ms), written before it
# leaves: a restarted wallet asks again with the same id and gets the same scrip. A row
# goes with the scrip that answers it, with the broker's refusal, or once it is older than
# any scrip it could bring (``MINT_ORDER_KEPT``).
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
