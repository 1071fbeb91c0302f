"""Signed ledger heads kept by agents, and checking a ledger against them.

The broker publishes ``LedgerHead(issuer, seq, head, at)`` as a retained, signed broadcast
(``micropay/v1/pub/<broker>/ledger-head``) whenever its durable head moved. Every agent
keeps the raw envelopes it receives. Each one is a statement, signed by the broker, that
its ledger's link hash at ``seq`` was ``head``; since every link covers everything before
it, no event up to ``seq`` can be edited, dropped or reordered afterwards without
contradicting it, even by a broker that re-signs its own checkpoints.

Witness files are JSON lines, one ``{"seq", "at", "topic", "envelope"}`` per head (the
envelope in hex), as ``micropay witness export`` writes them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from broker_ledger.audit import AuditReport
from broker_ledger.format import GENESIS
from protocol import topics
from protocol.envelope import Auth, open_body, parse, verify_signed
from protocol.errors import RemoteProtocolError
from protocol.messages import LedgerHead

CHECK = "witnessed-heads"


class WitnessFileError(Exception):
    """A witness file that cannot be read as JSON lines of signed heads."""


@dataclass(frozen=True, slots=True)
class Witnessed:
    """One signed head as an agent received it."""

    seq: int
    at: int
    topic: str
    envelope: bytes

    def as_json(self) -> str:
        """One line of a witness file."""
        return json.dumps(
            {"seq": self.seq, "at": self.at, "topic": self.topic, "envelope": self.envelope.hex()},
            sort_keys=True,
        )


def read_store(store: Path) -> list[Witnessed]:
    """The heads an agent's store kept (read-only; the agent may be running)."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as db:
        try:
            rows = db.execute("SELECT seq, at, topic, envelope FROM witnessed ORDER BY seq")
            return [Witnessed(int(s), int(a), str(t), bytes(e)) for s, a, t, e in rows]
        except sqlite3.OperationalError as exc:
            raise WitnessFileError(f"{store} keeps no ledger heads: {exc}") from exc


def write_lines(heads: Iterable[Witnessed], out: IO[str]) -> int:
    """Write heads as JSON lines; returns how many."""
    count = 0
    for head in heads:
        out.write(head.as_json() + "\n")
        count += 1
    return count


def read_lines(path: Path) -> Iterator[Witnessed]:
    """Heads from a JSON-lines witness file."""
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                yield Witnessed(
                    int(record["seq"]),
                    int(record["at"]),
                    str(record["topic"]),
                    bytes.fromhex(record["envelope"]),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise WitnessFileError(f"{path}:{number}: not a witnessed head: {exc}") from exc


def _signed_head(witnessed: Witnessed, broker_id: str, broker_key: bytes) -> LedgerHead:
    """The head inside a witnessed envelope, if the broker really signed it."""
    if witnessed.topic != topics.public(broker_id, "ledger-head"):
        raise RemoteProtocolError(f"topic {witnessed.topic!r} is not {broker_id}'s ledger head")
    parsed = parse(witnessed.envelope)
    if parsed.auth is not Auth.SIGNED or parsed.header.sender != broker_id:
        raise RemoteProtocolError(f"not a broadcast signed by {broker_id}")
    verify_signed(parsed, witnessed.topic, broker_key)
    body = open_body(parsed)
    if not isinstance(body, LedgerHead) or body.issuer != broker_id:
        raise RemoteProtocolError("the signed body is not a ledger head")
    return body


def check_witnesses(
    report: AuditReport, ledger: Path, heads: Iterable[Witnessed], broker_key: bytes | None
) -> int:
    """Compare the ledger's link hashes with every signed head; findings go to ``report``.

    Returns how many heads were checked. A head the broker did not sign proves nothing and
    is reported as such; a signed head the ledger contradicts is proof of a rewrite.
    """
    report.passed.setdefault(CHECK, True)
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        broker_id = report.broker_id or str(meta.get("broker_id", ""))
        if broker_key is None:
            stored = meta.get("broker_sign_key")
            broker_key = bytes.fromhex(stored) if stored else bytes(32)
        last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        count = 0
        for witnessed in heads:
            count += 1
            try:
                head = _signed_head(witnessed, broker_id, broker_key)
            except RemoteProtocolError as exc:
                report.fail(witnessed.seq, CHECK, f"unusable witness: {exc}")
                continue
            if head.seq > last:
                report.fail(
                    head.seq, CHECK, f"the broker signed head {head.seq}; the ledger ends at {last}"
                )
                continue
            row = db.execute("SELECT hash FROM events WHERE seq = ?", (head.seq,)).fetchone()
            stored_hash = GENESIS if head.seq == 0 else (bytes(row[0]) if row else None)
            if stored_hash != head.head:
                report.fail(
                    head.seq,
                    CHECK,
                    f"the broker signed link {head.head.hex()[:16]}… at {head.seq}; the ledger"
                    f" holds {stored_hash.hex()[:16] if stored_hash else 'nothing'}…",
                )
    return count
