"""Signed ledger heads kept by agents, and checking a ledger against them.

The broker states its ledger's link hash at ``seq`` in two ways: the retained, signed
``LedgerHead`` broadcast (``micropay/v1/pub/<broker>/ledger-head``), and the checkpoint
signature of the commit that every money reply carries (``Redeemed``, ``Registered``,
``Balance``). Agents keep the latest per commitment and the latest overall, plus any
statement that contradicted one they held. Since every link covers everything before it,
no event up to ``seq`` can be edited, dropped or reordered afterwards, nor the ledger cut
below it, without contradicting a statement the broker signed, even by a broker that
re-signs its own checkpoints.

Witness files are JSON lines, as ``micropay witness`` writes them: ``{"seq", "at",
"topic", "envelope"}`` for a broadcast (envelope in hex), ``{"seq", "at", "head",
"signature", "commitment"}`` for a reply's head, with ``"verdict"`` on a contradicting one.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from broker_ledger.audit_result import AuditReport
from broker_ledger.format import GENESIS
from broker_ledger.ledger_keys import key_history, read_rotations
from protocol import topics
from protocol.envelope import Auth, open_body, parse, verify_signed
from protocol.errors import LedgerHeadError, RemoteProtocolError
from protocol.ledger_heads import verify_head
from protocol.messages import LedgerHead, SignedHead
from protocol.trusted_keys import TrustedKeys

CHECK = "witnessed-heads"


class WitnessFileError(Exception):
    """A witness file that cannot be read as JSON lines of signed heads."""


@dataclass(frozen=True, slots=True)
class Witnessed:
    """One signed head as an agent kept it.

    A broadcast head is proven by its signed ``envelope`` (and ``topic``); a head that
    rode on a money reply by ``signature``, the broker's checkpoint signature over
    (broker, ``seq``, ``head``). ``verdict`` is set on a head the agent found contradicting
    another it held (``contradiction`` or ``regression``): evidence against the broker.
    """

    seq: int
    at: int
    topic: str = ""
    envelope: bytes = b""
    head: bytes = b""
    signature: bytes = b""
    scope: bytes = b""
    verdict: str = ""

    def as_json(self) -> str:
        """One line of a witness file."""
        record: dict[str, object] = {"seq": self.seq, "at": self.at}
        if self.envelope:
            record |= {"topic": self.topic, "envelope": self.envelope.hex()}
        else:
            record |= {"head": self.head.hex(), "signature": self.signature.hex()}
        if self.scope:
            record["commitment"] = self.scope.hex()
        if self.verdict:
            record["verdict"] = self.verdict
        return json.dumps(record, sort_keys=True)


def read_store(store: Path) -> list[Witnessed]:
    """The heads an agent's store kept, then the contradicting ones (read-only; it may run)."""
    heads: list[Witnessed] = []
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if not tables & {"heads", "witnessed"}:
            raise WitnessFileError(f"{store} keeps no ledger heads")
        if "witnessed" in tables:  # written by earlier versions, unbounded
            rows = db.execute("SELECT seq, at, topic, envelope FROM witnessed ORDER BY seq")
            heads.extend(Witnessed(int(s), int(a), str(t), bytes(e)) for s, a, t, e in rows)
        for table, label in (("heads", "scope"), ("contradictions", "verdict")):
            if table not in tables:
                continue
            rows = db.execute(
                f"SELECT {label}, seq, at, topic, envelope, head, signature FROM {table}"  # noqa: S608 - fixed names
                " ORDER BY seq"
            )
            for mark, seq, at, topic, envelope, head, signature in rows:
                heads.append(
                    Witnessed(
                        int(seq),
                        int(at),
                        str(topic),
                        bytes(envelope),
                        bytes(head),
                        bytes(signature),
                        scope=bytes(mark) if label == "scope" else b"",
                        verdict=str(mark) if label == "verdict" else "",
                    )
                )
    return heads


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
                    str(record.get("topic", "")),
                    bytes.fromhex(record.get("envelope", "")),
                    bytes.fromhex(record.get("head", "")),
                    bytes.fromhex(record.get("signature", "")),
                    bytes.fromhex(record.get("commitment", "")),
                    str(record.get("verdict", "")),
                )
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise WitnessFileError(f"{path}:{number}: not a witnessed head: {exc}") from exc


def _signed_head(witnessed: Witnessed, broker_id: str, keys: TrustedKeys) -> tuple[int, bytes]:
    """The (seq, head) the broker really signed, from an envelope or a checkpoint signature.

    Either is signed by the key in force at its ``seq`` (after a rotation, the new one).
    """
    if not witnessed.envelope:
        signed = SignedHead(witnessed.seq, witnessed.head, witnessed.signature)
        try:
            verify_head(keys.for_seq(signed.seq), broker_id, signed)
        except LedgerHeadError as exc:
            raise RemoteProtocolError(str(exc)) from exc
        return signed.seq, signed.head
    if witnessed.topic != topics.public(broker_id, "ledger-head"):
        raise RemoteProtocolError(f"topic {witnessed.topic!r} is not {broker_id}'s ledger head")
    parsed = parse(witnessed.envelope)
    if parsed.auth is not Auth.SIGNED or parsed.header.sender != broker_id:
        raise RemoteProtocolError(f"not a broadcast signed by {broker_id}")
    body = open_body(parsed)
    if not isinstance(body, LedgerHead) or body.issuer != broker_id:
        raise RemoteProtocolError("the signed body is not a ledger head")
    verify_signed(parsed, witnessed.topic, keys.for_seq(body.seq))
    return body.seq, body.head


def check_witnesses(
    report: AuditReport, ledger: Path, heads: Iterable[Witnessed], broker_key: bytes | None
) -> int:
    """Compare the ledger's link hashes with every signed head; findings go to ``report``.

    Returns how many heads were checked. A head the broker did not sign proves nothing and
    is reported as such; a signed head the ledger contradicts is proof of a rewrite.
    """
    report.passed.setdefault(CHECK, True)
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        broker_id = report.broker_id or str(meta.get("broker_id", ""))
        if broker_key is None:
            stored = meta.get("broker_sign_key")
            broker_key = bytes.fromhex(stored) if stored else bytes(32)
        keys = key_history(broker_id, read_rotations(db), broker_key).keys
        last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        count = 0
        for witnessed in heads:
            count += 1
            try:
                seq, head = _signed_head(witnessed, broker_id, keys)
            except RemoteProtocolError as exc:
                report.fail(witnessed.seq, CHECK, f"unusable witness: {exc}")
                continue
            if seq > last:
                report.fail(seq, CHECK, f"the broker signed head {seq}; the ledger ends at {last}")
                continue
            row = db.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
            stored_hash = GENESIS if seq == 0 else (bytes(row[0]) if row else None)
            if stored_hash != head:
                report.fail(
                    seq,
                    CHECK,
                    f"the broker signed link {head.hex()[:16]}… at {seq}; the ledger"
                    f" holds {stored_hash.hex()[:16] if stored_hash else 'nothing'}…",
                )
    return count
