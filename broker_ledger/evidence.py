"""Dispute evidence: one commitment's record in the ledger, signed by the broker.

A buyer disputing an invoice, or a vendor disputing a credit, needs more than the
broker's word and less than the whole ledger: the signed commitment, every event that
concerns it with the columns its link hash covers, what was charged and in which billing
periods, and the ledger head. The broker signs the bundle's canonical bytes under
``TAG_EVIDENCE``, so anyone holding its public key can check it offline
(``broker_ledger.evidence_verify``) and, given a copy of the ledger, that the events are
really in its hash chain.

The ledger is read through a read-only SQLite connection in one read transaction, so a
bundle is a consistent snapshot even while the broker daemon keeps appending.

Canonical bytes: the bundle as a JSON object without its ``signature`` member, keys
sorted, no whitespace, non-ASCII escaped (``json.dumps(..., sort_keys=True,
separators=(",", ":"), ensure_ascii=True)``); every number in a bundle is an integer and
every byte string is lowercase hex, so those bytes are unambiguous.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.request import pathname2url

import msgspec

from broker_ledger.codec import DEFAULT_CODEC, EventCodec, EventDecodeError
from broker_ledger.format import GENESIS
from broker_ledger.ledger_keys import read_rotations
from broker_ledger.store_records import StoredEvent
from broker_ledger.store_schema import FORMAT as LEDGER_FORMAT
from protocol.broker_events import (
    AnyBrokerEvent,
    CommitmentRegistered,
    InvoiceIssued,
    PaywordsRedeemed,
    PeriodClosed,
    RedemptionRejected,
    StatementIssued,
)
from protocol.codec import decode_certificate, decode_commitment, decode_signed
from protocol.credentials import commitment_id
from protocol.crypto import AgentKeys
from protocol.errors import MalformedMessageError

TAG_EVIDENCE: Final = b"micropay/v1/evidence\x00"
FORMAT: Final = "micropay-evidence/1"
_COLUMNS: Final = "e.seq, s.name, e.version, e.type, e.schema, e.at, e.body, e.hash"
_FROM: Final = "FROM streams AS s CROSS JOIN events AS e ON e.stream_id = s.id"
_HEX: Final = frozenset("0123456789abcdef")


class EvidenceError(Exception):
    """Evidence cannot be issued as asked: unknown commitment, wrong ledger or key."""


def canonical_bytes(bundle: dict[str, Any]) -> bytes:
    """What the broker signs (after ``TAG_EVIDENCE``): the bundle minus its signature."""
    unsigned = {key: value for key, value in bundle.items() if key != "signature"}
    return json.dumps(
        unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def sign_bundle(bundle: dict[str, Any], broker: AgentKeys) -> dict[str, Any]:
    """The bundle with the broker's Ed25519 signature over its canonical bytes."""
    signature = broker.sign(TAG_EVIDENCE, canonical_bytes(bundle))
    return {**bundle, "signature": signature.hex()}


def plain(value: Any) -> Any:  # noqa: ANN401 - any decoded event value
    """A decoded event value as JSON-ready data: bytes become lowercase hex."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def decoded_view(event: AnyBrokerEvent) -> dict[str, Any]:
    """The human-readable view of an event that a bundle carries beside its body bytes."""
    view: dict[str, Any] = plain(msgspec.to_builtins(event, builtin_types=(bytes,)))
    return view


# --- reading the ledger ------------------------------------------------------------------------


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection: safe next to a running broker, never creates a file."""
    if not path.is_file():
        raise EvidenceError(f"no ledger file at {path}")
    uri = f"file:{pathname2url(str(path.resolve()))}?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None)


def ledger_meta(db: sqlite3.Connection) -> dict[str, str]:
    """The ledger's ``meta`` table (format, broker id, broker key)."""
    try:
        rows = db.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.DatabaseError as exc:
        raise EvidenceError(f"not a ledger: {exc}") from exc
    meta = {str(key): str(value) for key, value in rows}
    if meta.get("format") != LEDGER_FORMAT:
        raise EvidenceError(f"not a {LEDGER_FORMAT} file")
    return meta


def resolve_commitment(db: sqlite3.Connection, reference: str) -> bytes:
    """The commitment id a full hex id or a unique hex prefix names."""
    text = reference.strip().lower().removeprefix("commitment:")
    if not text or not set(text) <= _HEX or len(text) > 64:
        raise EvidenceError(f"{reference!r} is not a commitment id (hex) or a prefix of one")
    # Stream names hold the id in lowercase hex, so the prefix is a range of the name index.
    low = f"commitment:{text}"
    rows = db.execute(
        "SELECT name FROM streams WHERE name >= ? AND name < ? ORDER BY name LIMIT 2",
        (low, low + "g"),
    ).fetchall()
    if not rows:
        raise EvidenceError(f"no commitment {text} in the ledger")
    if len(rows) > 1:
        raise EvidenceError(f"{text} is the prefix of more than one commitment: give more digits")
    return bytes.fromhex(str(rows[0][0]).removeprefix("commitment:"))


def _rows(db: sqlite3.Connection, where: str, parameters: tuple[Any, ...]) -> list[StoredEvent]:
    query = f"SELECT {_COLUMNS} {_FROM} WHERE {where} ORDER BY e.seq"
    return [
        StoredEvent(int(a), str(b), int(c), str(d), int(e), int(f), bytes(g), bytes(h))
        for a, b, c, d, e, f, g, h in db.execute(query, parameters)
    ]


def _decode(codec: EventCodec, row: StoredEvent) -> AnyBrokerEvent:
    try:
        return codec.decode(row.type, row.schema, row.body)
    except EventDecodeError as exc:
        raise EvidenceError(f"event {row.seq} does not decode: {exc}") from exc


def presents(event: RedemptionRejected, cid: bytes) -> bool:
    """Whether a rejected redemption presented this commitment (its body hashes to ``cid``)."""
    try:
        return commitment_id(decode_signed(event.commitment).body) == cid
    except MalformedMessageError:
        return False


def head_of(db: sqlite3.Connection, through: int | None = None) -> tuple[int, bytes]:
    """The last event's (sequence, link hash), or that of event ``through``."""
    if through is None:
        row = db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    else:
        row = db.execute("SELECT seq, hash FROM events WHERE seq = ?", (through,)).fetchone()
    if row is None:
        raise EvidenceError(
            "the ledger has no events" if through is None else f"no event {through}"
        )
    return int(row[0]), bytes(row[1])


def collect(
    db: sqlite3.Connection, cid: bytes, through: int, codec: EventCodec = DEFAULT_CODEC
) -> list[StoredEvent]:
    """Every event up to ``through`` that concerns one commitment, in sequence order.

    Its own stream (registration, refusals, redemptions); rejected redemptions that
    presented it (in any vendor's rejection stream); and, for each closed period that
    billed some of its redemptions, the buyer's invoice, the vendor's statement and the
    period's closing marker.
    """
    own = _rows(db, "s.name = ? AND e.seq <= ?", (f"commitment:{cid.hex()}", through))
    registration = next((_decode(codec, r) for r in own if r.type == "commitment-registered"), None)
    if not isinstance(registration, CommitmentRegistered):
        raise EvidenceError(f"commitment {cid.hex()} was never registered: nothing was charged")
    buyer, vendor = registration.buyer, registration.vendor
    redeemed = [r.seq for r in own if r.type == "paywords-redeemed"]
    chosen = {r.seq: r for r in own}
    # Stream names are indexed, so a range over them finds these streams without a scan.
    rejections = _rows(
        db, "s.name >= 'rejections:' AND s.name < 'rejections;' AND e.seq <= ?", (through,)
    )
    for row in rejections:
        event = _decode(codec, row)
        if isinstance(event, RedemptionRejected) and presents(event, cid):
            chosen[row.seq] = row
    markers = _rows(
        db,
        "s.name >= 'period:' AND s.name < 'period;' AND e.type = 'period-closed' AND e.seq <= ?",
        (through,),
    )
    for marker_row in markers:
        marker = _decode(codec, marker_row)
        if not isinstance(marker, PeriodClosed) or not any(
            marker.after_sequence < seq <= marker.through_sequence for seq in redeemed
        ):
            continue
        chosen[marker_row.seq] = marker_row
        for row in _rows(db, "s.name = ? AND e.seq <= ?", (marker_row.stream, through)):
            event = _decode(codec, row)
            if (isinstance(event, InvoiceIssued) and event.buyer == buyer) or (
                isinstance(event, StatementIssued) and event.vendor == vendor
            ):
                chosen[row.seq] = row
    return [chosen[seq] for seq in sorted(chosen)]


def previous_hashes(db: sqlite3.Connection, rows: list[StoredEvent]) -> dict[int, bytes]:
    """The link hash before each row (``GENESIS`` before the first event)."""
    found: dict[int, bytes] = {}
    for row in rows:
        if row.seq == 1:
            found[row.seq] = GENESIS
            continue
        before = db.execute("SELECT hash FROM events WHERE seq = ?", (row.seq - 1,)).fetchone()
        if before is None:
            raise EvidenceError(f"event {row.seq - 1} is missing from the ledger")
        found[row.seq] = bytes(before[0])
    return found


# --- assembling the bundle ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the ledger held about one commitment at one head."""

    broker_id: str
    broker_key: bytes
    commitment_id: bytes
    rows: list[StoredEvent]
    previous: dict[int, bytes]
    head: tuple[int, bytes]
    rotations: tuple[bytes, ...] = ()  # the broker's key rotations (``SignedRotation`` bytes)


def event_record(row: StoredEvent, previous: bytes, event: AnyBrokerEvent) -> dict[str, Any]:
    """One event as a bundle carries it: the hashed columns, both link hashes, a view."""
    return {
        "seq": row.seq,
        "stream": row.stream,
        "version": row.version,
        "type": row.type,
        "schema": row.schema,
        "at": row.at,
        "body": row.body.hex(),
        "previous": previous.hex(),
        "hash": row.hash.hex(),
        "decoded": decoded_view(event),
    }


def _line(lines: list[Any], counterparty: str) -> dict[str, int]:
    for line in lines:
        if line.counterparty == counterparty:
            return {"units": line.units, "amount": line.amount}
    return {"units": 0, "amount": 0}


def _billing(
    decoded: list[tuple[StoredEvent, AnyBrokerEvent]],
    redemptions: list[tuple[int, PaywordsRedeemed]],
    buyer: str,
    vendor: str,
) -> list[dict[str, Any]]:
    entries = []
    for row, marker in decoded:
        if not isinstance(marker, PeriodClosed):
            continue
        covered = [
            event
            for seq, event in redemptions
            if marker.after_sequence < seq <= marker.through_sequence
        ]
        invoice_seq, statement_seq = 0, 0
        invoice_line = statement_line = {"units": 0, "amount": 0}
        for other_row, other in decoded:
            if isinstance(other, InvoiceIssued) and other.period == marker.period:
                invoice_seq, invoice_line = other_row.seq, _line(other.lines, vendor)
            elif isinstance(other, StatementIssued) and other.period == marker.period:
                statement_seq, statement_line = other_row.seq, _line(other.lines, buyer)
        entries.append(
            {
                "period": marker.period,
                "after_sequence": marker.after_sequence,
                "through_sequence": marker.through_sequence,
                "closed_seq": row.seq,
                "units": sum(event.units for event in covered),
                "amount": sum(event.amount for event in covered),
                "invoice_seq": invoice_seq,
                "invoice_line": invoice_line,
                "statement_seq": statement_seq,
                "statement_line": statement_line,
            }
        )
    return entries


def assemble(snapshot: Snapshot, at: int, codec: EventCodec = DEFAULT_CODEC) -> dict[str, Any]:
    """The unsigned bundle for a snapshot (pure: no I/O)."""
    cid = snapshot.commitment_id
    decoded = [(row, _decode(codec, row)) for row in snapshot.rows]
    own = f"commitment:{cid.hex()}"
    registration = next(
        (e for r, e in decoded if r.stream == own and isinstance(e, CommitmentRegistered)), None
    )
    if registration is None:
        raise EvidenceError(f"commitment {cid.hex()} was never registered")
    try:
        signed = decode_signed(registration.commitment)
        commitment = decode_commitment(signed.body)
        certificate = decode_certificate(decode_signed(commitment.buyer_certificate).body)
    except MalformedMessageError as exc:
        raise EvidenceError(f"the registered commitment does not decode: {exc}") from exc
    redemptions = [
        (r.seq, e) for r, e in decoded if r.stream == own and isinstance(e, PaywordsRedeemed)
    ]
    index, payword = (
        (redemptions[-1][1].index, redemptions[-1][1].payword)
        if redemptions
        else (0, commitment.root)
    )
    total = sum(event.amount for _, event in redemptions)
    billing = _billing(decoded, redemptions, registration.buyer, registration.vendor)
    billed = sum(entry["amount"] for entry in billing)
    head_seq, head_hash = snapshot.head
    return {
        "format": FORMAT,
        "issued_at": at,
        "broker": {
            "id": snapshot.broker_id,
            "sign_key": snapshot.broker_key.hex(),
            # after a key rotation: the history linking the key in force to older ones
            **({"rotations": [r.hex() for r in snapshot.rotations]} if snapshot.rotations else {}),
        },
        "commitment": {
            "id": cid.hex(),
            "signed": registration.commitment.hex(),
            "buyer": certificate.subject,
            "buyer_serial": certificate.serial,
            "buyer_sign_key": certificate.sign_key.hex(),
            "vendor": commitment.vendor,
            "unit_value": commitment.unit_value,
            "currency": commitment.currency,
            "length": commitment.length,
            "root": commitment.root.hex(),
            "issued_at": commitment.issued_at,
            "not_after": commitment.not_after,
        },
        "highest": {"index": index, "payword": payword.hex()},
        "charged": {"total": total, "billed": billed, "unbilled": total - billed},
        "billing": billing,
        "events": [event_record(row, snapshot.previous[row.seq], event) for row, event in decoded],
        "ledger_head": {"seq": head_seq, "hash": head_hash.hex()},
    }


def snapshot(
    ledger: Path, reference: str, codec: EventCodec = DEFAULT_CODEC
) -> tuple[Snapshot, dict[str, str]]:
    """Read one commitment's events and the head in a single read transaction."""
    db = open_readonly(ledger)
    try:
        db.execute("BEGIN")
        meta = ledger_meta(db)
        cid = resolve_commitment(db, reference)
        head = head_of(db)
        rows = collect(db, cid, head[0], codec)
        previous = previous_hashes(db, rows)
        rotations = tuple(event.rotation for _, event in read_rotations(db, codec) if event)
        db.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise EvidenceError(f"cannot read {ledger}: {exc}") from exc
    finally:
        db.close()
    key = bytes.fromhex(meta.get("broker_sign_key", ""))
    snapshot = Snapshot(meta.get("broker_id", ""), key, cid, rows, previous, head, rotations)
    return snapshot, meta


def issue(  # noqa: PLR0913 - where, who, what and when
    ledger: Path,
    broker: AgentKeys,
    broker_id: str,
    reference: str,
    at: int,
    codec: EventCodec = DEFAULT_CODEC,
) -> dict[str, Any]:
    """The signed evidence bundle for one commitment (``reference``: hex id or prefix)."""
    found, meta = snapshot(ledger, reference, codec)
    if found.broker_id != broker_id:
        raise EvidenceError(f"{ledger} belongs to broker {found.broker_id!r}, not {broker_id!r}")
    stored_key = meta.get("broker_sign_key")
    if stored_key is not None and stored_key != broker.sign_key.hex():
        raise EvidenceError(f"{ledger} was signed with another broker key")
    bundle = assemble(dataclasses.replace(found, broker_key=broker.sign_key), at, codec)
    return sign_bundle(bundle, broker)
