"""The shape of a dispute evidence bundle, and parsing it from JSON into typed bytes.

Only the structure is checked here (every field present, of its type, hex of the right
length, columns in their ranges); what the bundle claims is checked by
``broker_ledger.evidence_verify``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from broker_ledger.evidence import FORMAT
from broker_ledger.store_records import StoredEvent

_HEX_DIGITS: Final = frozenset("0123456789abcdef")
_U64_LIMIT: Final = 2**63
_U32_LIMIT: Final = 2**32


class _Part(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Strict parts: an unknown member is a format error, not something silently unsigned."""


class BrokerPart(_Part, frozen=True):
    """Who issued the bundle."""

    id: str
    sign_key: str
    rotations: list[str] = msgspec.field(default_factory=list)


class CommitmentPart(_Part, frozen=True):
    """The signed commitment and the essentials a reader wants without decoding it."""

    id: str
    signed: str
    buyer: str
    buyer_serial: int
    buyer_sign_key: str
    vendor: str
    unit_value: int
    currency: str
    length: int
    root: str
    issued_at: int
    not_after: int


class HighestPart(_Part, frozen=True):
    """The highest payword redeemed (the root at index 0 when none was)."""

    index: int
    payword: str


class ChargedPart(_Part, frozen=True):
    """What the commitment cost the buyer: in all, in closed periods, not yet billed."""

    total: int
    billed: int
    unbilled: int


class LinePart(_Part, frozen=True):
    """One invoice or statement line."""

    units: int
    amount: int


class BilledPart(_Part, frozen=True):
    """One closed period that billed some of the commitment's redemptions."""

    period: str
    after_sequence: int
    through_sequence: int
    closed_seq: int
    units: int
    amount: int
    invoice_seq: int
    invoice_line: LinePart
    statement_seq: int
    statement_line: LinePart


class EventPart(_Part, frozen=True):
    """One ledger event: every hashed column, both link hashes, a readable view."""

    seq: int
    stream: str
    version: int
    type: str
    schema: int
    at: int
    body: str
    previous: str
    hash: str
    decoded: dict[str, Any]


class HeadPart(_Part, frozen=True):
    """The ledger head when the bundle was issued."""

    seq: int
    hash: str


class BundlePart(_Part, frozen=True):
    """A whole evidence bundle as found in the file."""

    format: str
    issued_at: int
    broker: BrokerPart
    commitment: CommitmentPart
    highest: HighestPart
    charged: ChargedPart
    billing: list[BilledPart]
    events: list[EventPart]
    ledger_head: HeadPart
    signature: str


class BundleFormatError(Exception):
    """The file is not a well-formed evidence bundle."""


def _hex(text: str, what: str, size: int | None = None) -> bytes:
    if len(text) % 2 or not set(text) <= _HEX_DIGITS:
        raise BundleFormatError(f"{what} is not lowercase hex")
    raw = bytes.fromhex(text)
    if size is not None and len(raw) != size:
        raise BundleFormatError(f"{what} is {len(raw)} bytes, not {size}")
    return raw


def _columns_in_range(event: EventPart) -> None:
    """Columns the link hash encodes in fixed widths must fit them (and SQLite's integers)."""
    if not (
        1 <= event.seq < _U64_LIMIT
        and 0 <= event.version < _U64_LIMIT
        and 0 <= event.at < _U64_LIMIT
        and 0 <= event.schema < _U32_LIMIT
        and len(event.stream.encode()) <= 0xFFFF
        and len(event.type.encode()) <= 0xFFFF
    ):
        raise BundleFormatError(f"event {event.seq}: a column is out of range")


@dataclass(frozen=True, slots=True)
class EventItem:
    """An event of the bundle with its bytes decoded from hex."""

    row: StoredEvent
    previous: bytes
    decoded: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Evidence:
    """A parsed bundle: the JSON shape checked, every hex field turned into bytes."""

    part: BundlePart
    broker_key: bytes
    commitment_id: bytes
    signed: bytes
    root: bytes
    buyer_sign_key: bytes
    payword: bytes
    events: list[EventItem]
    head: tuple[int, bytes]
    signature: bytes


def parse(data: Any) -> Evidence:  # noqa: ANN401 - whatever the JSON file held
    """Check the bundle's shape; ``BundleFormatError`` says what is wrong with it."""
    try:
        part = msgspec.convert(data, BundlePart)
    except msgspec.ValidationError as exc:
        raise BundleFormatError(str(exc)) from exc
    if part.format != FORMAT:
        raise BundleFormatError(f"format {part.format!r}, not {FORMAT!r}")
    for e in part.events:
        _columns_in_range(e)
    events = [
        EventItem(
            StoredEvent(
                e.seq,
                e.stream,
                e.version,
                e.type,
                e.schema,
                e.at,
                _hex(e.body, f"event {e.seq} body"),
                _hex(e.hash, f"event {e.seq} hash", 32),
            ),
            _hex(e.previous, f"event {e.seq} previous hash", 32),
            e.decoded,
        )
        for e in part.events
    ]
    commitment = part.commitment
    return Evidence(
        part,
        _hex(part.broker.sign_key, "broker.sign_key", 32),
        _hex(commitment.id, "commitment.id", 32),
        _hex(commitment.signed, "commitment.signed"),
        _hex(commitment.root, "commitment.root", 32),
        _hex(commitment.buyer_sign_key, "commitment.buyer_sign_key", 32),
        _hex(part.highest.payword, "highest.payword"),
        events,
        (part.ledger_head.seq, _hex(part.ledger_head.hash, "ledger_head.hash", 32)),
        _hex(part.signature, "signature", 64),
    )
