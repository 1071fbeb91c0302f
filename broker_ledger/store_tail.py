"""The check a ledger passes before a signing broker may append to it.

The latest checkpoint's signature must verify, the event it names must hold its hash,
and every link after it must recompute: a ledger with an unsigned tail, a missing event
or a signature that does not verify is refused before anything is appended or signed.
Costs one signature check and a handful of reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from broker_ledger.format import GENESIS, link_hash
from broker_ledger.store_errors import LedgerIntegrityError
from broker_ledger.store_reader import LedgerReader
from protocol.errors import LedgerHeadError
from protocol.ledger_heads import verify_head
from protocol.messages import SignedHead
from protocol.trusted_keys import TrustedKeys


@dataclass(frozen=True, slots=True)
class SignedTail:
    """What the check found: the verified latest checkpoint and what it covers."""

    signed: SignedHead | None  # None: no checkpoint at all (an admitted unsigned ledger)
    unsigned_from: int  # the first event no signature covers (past the end: none)
    kept: int  # the latest checkpoint kept for good


async def check_signed_tail(  # noqa: PLR0913 - the ledger, whose it is, and how far it goes
    reader: LedgerReader,
    path: str | Path,
    broker_id: str,
    keys: TrustedKeys,
    last: int,
    *,
    unsigned_tail: bool = False,
) -> SignedTail:
    """Refuse a ledger whose last event (``last``) no valid broker signature covers.

    ``unsigned_tail`` admits events after the latest checkpoint (links still checked),
    only so that ``sign_tail`` can adopt them after an audit.
    """
    db = reader.connection
    checkpoints = list(
        await db.execute_fetchall(
            "SELECT seq, head, signature FROM checkpoints ORDER BY seq DESC LIMIT 1"
        )
    )
    if not checkpoints:
        if last and not unsigned_tail:
            raise LedgerIntegrityError(path, 1, f"no signed checkpoint covers events 1..{last}")
        if last:
            await check_links(reader, path, 0, GENESIS, last)
        return SignedTail(None, 1, 0)
    seq, signed_head, signature = (
        int(checkpoints[0][0]),
        bytes(checkpoints[0][1]),
        bytes(checkpoints[0][2]),
    )
    signed = SignedHead(seq, signed_head, signature)
    try:
        verify_head(keys.for_seq(seq), broker_id, signed)
    except LedgerHeadError as exc:
        raise LedgerIntegrityError(path, seq, "the checkpoint signature does not verify") from exc
    if seq > last:
        raise LedgerIntegrityError(
            path, last + 1, f"a signed checkpoint covers {seq} but the ledger ends at {last}"
        )
    stored = GENESIS
    if seq:
        rows = list(await db.execute_fetchall("SELECT hash FROM events WHERE seq = ?", (seq,)))
        stored = bytes(rows[0][0]) if rows else b""
    if stored != signed_head:
        raise LedgerIntegrityError(path, seq, "the event differs from the signed checkpoint")
    await check_links(reader, path, seq, signed_head, last)
    if last > seq and not unsigned_tail:
        raise LedgerIntegrityError(
            path, seq + 1, f"events {seq + 1}..{last} are not covered by a broker signature"
        )
    kept = await db.execute_fetchall("SELECT MAX(seq) FROM checkpoints WHERE kept")
    return SignedTail(signed, seq + 1, int(next(iter(kept))[0] or 0))


async def check_links(
    reader: LedgerReader, path: str | Path, seq: int, head: bytes, last: int
) -> None:
    """Every link after ``seq`` (whose hash is ``head``) recomputed up to ``last``."""
    link = head
    async for row in reader.iterate(after=seq):
        if row.seq > last:
            break
        link = link_hash(
            link, row.seq, row.stream, row.version, row.type, row.schema, row.at, row.body
        )
        if link != row.hash:
            raise LedgerIntegrityError(path, row.seq, "the event's link hash does not match")
