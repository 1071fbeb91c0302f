"""The broker's signing keys as its ledger records them: ``broker-key-rotated`` events.

Each event holds a rotation statement signed by the key it retires and the key it
installs, and sits at the ``from_seq`` the statement names: the checkpoint of that
commit and every later one are signed by the new key. The store, the audit, the witness
check and the daemon's start all read the history here, one small query.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker_ledger.codec import DEFAULT_CODEC, EventCodec, EventDecodeError
from protocol.broker_events import BrokerKeyRotated
from protocol.codec import decode_key_rotation, decode_signed_rotation
from protocol.errors import KeyRotationError, MalformedMessageError
from protocol.key_rotation import open_rotation
from protocol.messages import KeyRotation
from protocol.trusted_keys import TrustedKeys

ROTATED = "broker-key-rotated"
SELECT_ROTATIONS = (
    "SELECT events.seq, events.type, events.schema, events.body FROM events"
    " WHERE events.type = ? ORDER BY events.seq"
)


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """The keys the ledger's rotations chain together, and what was wrong with any of them."""

    keys: TrustedKeys
    problems: list[tuple[int | None, str]]


def read_rotations(
    db: sqlite3.Connection, codec: EventCodec = DEFAULT_CODEC
) -> list[tuple[int, BrokerKeyRotated | None]]:
    """Every rotation event, in order (``None``: a body that does not decode)."""
    return decode_rotations(db.execute(SELECT_ROTATIONS, (ROTATED,)), codec)


def decode_rotations(
    rows: Iterable[Any], codec: EventCodec = DEFAULT_CODEC
) -> list[tuple[int, BrokerKeyRotated | None]]:
    """Rows of ``SELECT_ROTATIONS`` as events (``None``: a body that does not decode)."""
    found: list[tuple[int, BrokerKeyRotated | None]] = []
    for seq, kind, schema, body in rows:
        try:
            event = codec.decode(kind, schema, bytes(body))
        except EventDecodeError:
            found.append((int(seq), None))
            continue
        found.append((int(seq), event if isinstance(event, BrokerKeyRotated) else None))
    return found


def rotations_at(path: str, codec: EventCodec = DEFAULT_CODEC) -> list[BrokerKeyRotated]:
    """The rotations of a ledger file, read-only (the daemon picks its key file by them)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if "events" not in tables:
            return []
        return [event for _, event in read_rotations(db, codec) if event is not None]


def key_history(
    broker_id: str, rotations: list[tuple[int, BrokerKeyRotated | None]], trusted: bytes
) -> KeyHistory:
    """The keys to verify the ledger with, starting from one key an auditor trusts.

    Each rotation must be signed by the key in force and by its new key, follow the one
    before without a gap and sit at the sequence number it names; the keys after a
    rotation that breaks a rule are not trusted. ``trusted`` must be one of the keys
    (every link is signed both ways, so any one of them vouches for all); otherwise the
    ledger is checked against ``trusted`` alone.
    """
    problems: list[tuple[int | None, str]] = []
    good: list[BrokerKeyRotated] = []
    for seq, event in rotations:
        problem = _problem(broker_id, seq, event, good)
        if problem is not None:
            problems.append((seq, problem))
            break
        assert event is not None  # noqa: S101 - _problem found none
        good.append(event)
    if not good:
        return KeyHistory(TrustedKeys.pinned_to(broker_id, trusted), problems)
    chain = [decode_signed_rotation(event.rotation) for event in good]
    keys = TrustedKeys.pinned_to(broker_id, good[-1].new_sign_key).extend(chain)
    if not keys.trusts(trusted):
        problems.append((None, "the broker key trusted is none of the keys the ledger rotated"))
        return KeyHistory(TrustedKeys.pinned_to(broker_id, trusted), problems)
    return KeyHistory(keys, problems)


def _problem(
    broker_id: str, seq: int, event: BrokerKeyRotated | None, before: list[BrokerKeyRotated]
) -> str | None:
    """What is wrong with one rotation event, given the good ones before it."""
    if event is None:
        return "a key rotation event does not decode"
    in_force = before[-1].new_sign_key if before else event.old_sign_key
    try:
        statement = open_rotation(decode_signed_rotation(event.rotation), broker_id, in_force)
    except (KeyRotationError, MalformedMessageError) as exc:
        return str(exc)
    return _misplaced(statement, seq, event, before)


def _misplaced(
    statement: KeyRotation, seq: int, event: BrokerKeyRotated, before: list[BrokerKeyRotated]
) -> str | None:
    """A well-signed statement out of order, at the wrong place, or recorded otherwise."""
    in_force = before[-1].new_sign_key if before else event.old_sign_key
    expected = before[-1].sequence + 1 if before else 1
    if statement.sequence != expected:
        return f"rotation {statement.sequence} where rotation {expected} was due"
    if statement.from_seq != seq:
        return f"rotation {statement.sequence} names sequence {statement.from_seq}, not its own"
    fields = (event.sequence, event.old_sign_key, event.new_sign_key, event.from_seq)
    if fields != (statement.sequence, in_force, statement.new_sign_key, statement.from_seq):
        return f"the event of rotation {statement.sequence} differs from its signed statement"
    if before and statement.agree_key != _agree_key(before[0]):
        return f"rotation {statement.sequence} changes the agreement key"
    return None


def _agree_key(event: BrokerKeyRotated) -> bytes:
    return decode_key_rotation(decode_signed_rotation(event.rotation).statement).agree_key
