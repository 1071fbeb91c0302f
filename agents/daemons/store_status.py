"""What a vendor's store or a buyer's wallet holds, read read-only beside its running agent.

The agent writes its file in WAL mode, so another process may read it at any time and
sees the last commit: ``micropay vendor status`` needs no channel to the daemon, and a
backup's copy is summed up by the same code. Money is counted with ``money_rules``, each
chain at the unit value its commitment was signed with.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from protocol.codec import decode_certificate, decode_commitment, decode_signed
from protocol.errors import RemoteProtocolError
from protocol.money_rules import amount_for


class StoreReadError(Exception):
    """The file is missing or is not an agent's store."""


@dataclass(slots=True)
class ScripRefusal:
    """A scrip deposit the broker refused for good: the record, kept, and the reason."""

    serial: int
    generation: int
    buyer: str
    price: int
    reason: str
    at: int


@dataclass(slots=True)
class BuyerLine:
    """One buyer's chains at the vendor, summed."""

    buyer: str
    chains: int = 0
    units_held: int = 0
    units_redeemed: int = 0
    units_awaiting: int = 0
    amount_awaiting: int = 0


@dataclass(slots=True)
class VendorStatus:
    """A vendor's chains and what the broker has credited of them.

    Units are paywords: ``held`` is the highest index accepted, ``redeemed`` what the
    broker confirmed, ``awaiting`` the difference, still to be redeemed. Amounts are in
    minor units. ``last_receipt_seq`` is the ledger head signed on the broker's latest
    redemption receipt the vendor keeps; ``latest_head_seq`` the latest head it saw at all.
    Scrip: ``scrip_serials`` in the spent set, ``scrip_awaiting_deposit`` of them not
    confirmed by the broker yet, and ``scrip_refused`` the deposits the broker refused for
    good, each kept with the broker's reason (``ScripRefusal``) for the operator.
    """

    store: str
    account: str = ""
    certificate_serial: int = 0
    chains: int = 0
    units_held: int = 0
    units_redeemed: int = 0
    units_awaiting: int = 0
    amount_held: int = 0
    amount_redeemed: int = 0
    amount_awaiting: int = 0
    last_receipt_seq: int = 0
    last_receipt_at: int = 0
    latest_head_seq: int = 0
    contradictions: int = 0
    buyers: list[BuyerLine] = field(default_factory=list)
    scrip_serials: int = 0
    scrip_awaiting_deposit: int = 0
    scrip_refused: list[ScripRefusal] = field(default_factory=list)


@dataclass(slots=True)
class WalletStatus:
    """A buyer's channels: how many, and the paywords spent of how many."""

    store: str
    account: str = ""
    certificate_serial: int = 0
    channels: int = 0
    paywords_spent: int = 0
    paywords_total: int = 0
    latest_head_seq: int = 0


def read_vendor_status(path: Path) -> VendorStatus:
    """Sum up a vendor's store (read-only; safe while the vendor runs)."""
    status = VendorStatus(str(path))
    with _read_only(path) as db:
        status.account, status.certificate_serial = _certificate(db)
        lines: dict[str, BuyerLine] = {}
        for buyer, commitment, index, redeemed in db.execute(
            "SELECT buyer, commitment, idx, redeemed FROM chains ORDER BY buyer"
        ):
            unit_value = _unit_value(bytes(commitment))
            awaiting = max(int(index) - int(redeemed), 0)
            line = lines.setdefault(str(buyer), BuyerLine(str(buyer)))
            line.chains += 1
            line.units_held += int(index)
            line.units_redeemed += int(redeemed)
            line.units_awaiting += awaiting
            line.amount_awaiting += amount_for(awaiting, unit_value)
            status.amount_held += amount_for(int(index), unit_value)
            status.amount_redeemed += amount_for(int(redeemed), unit_value)
        status.buyers = list(lines.values())
        status.chains = sum(line.chains for line in status.buyers)
        status.units_held = sum(line.units_held for line in status.buyers)
        status.units_redeemed = sum(line.units_redeemed for line in status.buyers)
        status.units_awaiting = sum(line.units_awaiting for line in status.buyers)
        status.amount_awaiting = sum(line.amount_awaiting for line in status.buyers)
        receipt = db.execute(
            "SELECT seq, at FROM heads WHERE scope != x'' ORDER BY seq DESC, at DESC LIMIT 1"
        ).fetchone()
        if receipt is not None:
            status.last_receipt_seq, status.last_receipt_at = int(receipt[0]), int(receipt[1])
        status.latest_head_seq = _latest_head(db)
        status.contradictions = int(db.execute("SELECT COUNT(*) FROM contradictions").fetchone()[0])
        _scrip(db, status)
    return status


def _scrip(db: sqlite3.Connection, status: VendorStatus) -> None:
    """The spent set, and the refusals (a store written before they were kept has none)."""
    refused = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'scrip_refused'"
    ).fetchone()
    if refused is not None:
        status.scrip_refused = [
            ScripRefusal(int(r[0]), int(r[1]), str(r[2]), int(r[3]), str(r[4]), int(r[5]))
            for r in db.execute(
                "SELECT serial, generation, buyer, price, reason, at FROM scrip_refused"
                " ORDER BY at, serial"
            )
        ]
    kept = {(r.serial, r.generation) for r in status.scrip_refused}
    for serial, generation, confirmed, spent in db.execute(
        "SELECT serial, generation, confirmed, length(spent) FROM spent_scrip"
    ):
        status.scrip_serials += 1
        if generation > confirmed and spent and (serial, generation) not in kept:
            status.scrip_awaiting_deposit += 1


def read_wallet_status(path: Path) -> WalletStatus:
    """Sum up a buyer's wallet (read-only)."""
    status = WalletStatus(str(path))
    with _read_only(path) as db:
        status.account, status.certificate_serial = _certificate(db)
        count, spent, total = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(spent), 0), COALESCE(SUM(length), 0) FROM channels"
        ).fetchone()
        status.channels, status.paywords_spent, status.paywords_total = (
            int(count),
            int(spent),
            int(total),
        )
        status.latest_head_seq = _latest_head(db)
    return status


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    if not path.is_file():
        raise StoreReadError(f"no agent store at {path}")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            yield db
    except sqlite3.Error as exc:
        raise StoreReadError(f"{path} is not an agent store: {exc}") from exc


def _certificate(db: sqlite3.Connection) -> tuple[str, int]:
    row = db.execute("SELECT value FROM meta WHERE key = 'certificate'").fetchone()
    if row is None:
        return "", 0
    try:
        certificate = decode_certificate(decode_signed(bytes(row[0])).body)
    except RemoteProtocolError:
        return "", 0
    return certificate.subject, certificate.serial


def _unit_value(commitment: bytes) -> int:
    try:
        return decode_commitment(decode_signed(commitment).body).unit_value
    except RemoteProtocolError as exc:
        raise StoreReadError(f"a stored commitment does not decode: {exc}") from exc


def _latest_head(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT seq FROM heads WHERE scope = x''").fetchone()
    return 0 if row is None else int(row[0])
