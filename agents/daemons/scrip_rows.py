"""The statements that keep scrip: a vendor's spent set, a wallet's scrip and payments.

They run in the batch's transaction, in event order, one by one: a wallet's serial moves
from generation to generation within a batch (spent, then its change kept), so grouping
them by kind could leave the wrong generation behind. Scrip is not the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.runtime.sealing import SeedSealer, scrip_label, secret_label
from protocol.events import (
    ScripAccepted,
    ScripDepositConfirmed,
    ScripDepositRefused,
    ScripExpired,
    ScripForgotten,
    ScripMintOrdered,
    ScripMintRefused,
    ScripPaymentRefused,
    ScripPaymentSent,
    ScripReceived,
    ScripSettled,
)

Statement = tuple[str, list[tuple[object, ...]]]

KEEP_RECORD = """
INSERT INTO spent_scrip VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (serial) DO UPDATE SET
    generation = excluded.generation, buyer = excluded.buyer, item = excluded.item,
    price = excluded.price, spent = excluded.spent, change = excluded.change,
    expires = excluded.expires, confirmed = MAX(confirmed, excluded.confirmed)
WHERE excluded.generation >= spent_scrip.generation
"""
KEEP_REFUSED = """
INSERT OR REPLACE INTO scrip_refused
SELECT serial, generation, buyer, item, price, spent, change, expires, ?, ?
FROM spent_scrip WHERE serial = ? AND generation = ?
"""
ADOPT_GENERATION = """
UPDATE spent_scrip SET generation = ?, spent = x'', item = '', price = 0, change = ?
WHERE serial = ? AND generation < ?
"""


def vendor_statements(event: object) -> list[Statement]:
    """A vendor's spent-set rows for one event (none for other events)."""
    match event:
        case ScripAccepted():
            row = (
                event.serial,
                event.generation,
                event.buyer,
                event.item,
                event.price,
                event.spent,
                event.change,
                event.expires,
                event.confirmed,
            )
            return [(KEEP_RECORD, [row])]
        case ScripDepositConfirmed(serial=serial, generation=generation):
            return [
                (ADOPT_GENERATION, [(generation, event.change, serial, generation)]),
                (
                    "UPDATE spent_scrip SET confirmed = MAX(confirmed, ?) WHERE serial = ?",
                    [(generation, serial)],
                ),
            ]
        case ScripDepositRefused(serial=serial, generation=generation):
            return [(KEEP_REFUSED, [(event.detail, event.at, serial, generation)])]
        case ScripForgotten(serial=serial):
            return [("DELETE FROM spent_scrip WHERE serial = ?", [(serial,)])]
        case _:
            return []


def wallet_statements(event: object, sealer: SeedSealer | None) -> list[Statement]:
    """A wallet's scrip rows for one event; scrip and secrets only ever sealed."""
    match event:
        case ScripReceived():
            if sealer is None:
                msg = "this store was opened without a sealer: it keeps no scrip"
                raise TypeError(msg)
            scrip = sealer.seal_scrip(scrip_label(event.serial), event.scrip)
            secret = sealer.seal_scrip(secret_label(event.vendor, event.ref), event.secret)
            row = (event.serial, event.vendor, event.generation, event.value, event.expires, scrip)
            return [
                ("INSERT OR REPLACE INTO scrip VALUES (?, ?, ?, ?, ?, ?)", [row]),
                (
                    "INSERT OR IGNORE INTO scrip_secrets VALUES (?, ?, ?)",
                    [(event.vendor, event.ref, secret)],
                ),
                *_order_answered(event.request),
            ]
        case ScripPaymentSent():
            row2 = (event.serial, event.generation, event.vendor, event.item, event.price)
            return [("INSERT OR REPLACE INTO scrip_pending VALUES (?, ?, ?, ?, ?)", [row2])]
        case ScripSettled(serial=serial, generation=generation):
            return _forget(serial, generation, scrip=True)
        case ScripPaymentRefused(serial=serial, generation=generation, lost=lost):
            return _forget(serial, generation, scrip=lost)
        case ScripExpired(serial=serial):
            return [
                ("DELETE FROM scrip_pending WHERE serial = ?", [(serial,)]),
                ("DELETE FROM scrip WHERE serial = ?", [(serial,)]),
            ]
        case _:
            return []


def order_statements(event: object) -> list[Statement]:
    """A wallet's mint orders: written before the ``scrip?`` leaves, gone once answered."""
    match event:
        case ScripMintOrdered():
            order = (event.request, event.vendor, event.value, event.at)
            return [("INSERT OR IGNORE INTO scrip_orders VALUES (?, ?, ?, ?)", [order])]
        case ScripMintRefused(request=request):
            return _order_answered(request)
        case _:
            return []


def _order_answered(request: bytes) -> list[Statement]:
    if not request:
        return []
    return [("DELETE FROM scrip_orders WHERE request = ?", [(request,)])]


def _forget(serial: int, generation: int, *, scrip: bool) -> list[Statement]:
    rows: list[tuple[object, ...]] = [(serial, generation)]
    statements: list[Statement] = [
        ("DELETE FROM scrip_pending WHERE serial = ? AND generation = ?", rows)
    ]
    if scrip:
        statements.append(("DELETE FROM scrip WHERE serial = ? AND generation = ?", rows))
    return statements


def scrip_statements(events: Sequence[object], sealer: SeedSealer | None) -> list[Statement]:
    """Every scrip statement of a batch, in event order."""
    statements: list[Statement] = []
    for event in events:
        statements.extend(vendor_statements(event))
        statements.extend(wallet_statements(event, sealer))
        statements.extend(order_statements(event))
    return statements
