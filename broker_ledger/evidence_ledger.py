"""Evidence checks against a copy of the ledger: inclusion and completeness.

The bundle's events sit in the copy's hash chain, and none of its events about the
commitment was left out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from broker_ledger.codec import EventCodec
from broker_ledger.evidence import EvidenceError, collect, ledger_meta, open_readonly
from broker_ledger.evidence_bundle import EventItem, Evidence
from broker_ledger.evidence_report import EvidenceReport
from broker_ledger.format import GENESIS, link_hash
from broker_ledger.store_records import StoredEvent

CHUNK: Final = 20_000


def check_against_ledger(
    report: EvidenceReport, evidence: Evidence, ledger: Path, codec: EventCodec
) -> None:
    """The bundle's events sit in the ledger copy's hash chain, and none was left out."""
    report.start("ledger-inclusion", "ledger-completeness")
    try:
        db = open_readonly(ledger)
    except EvidenceError as exc:
        report.fail("ledger-inclusion", str(exc))
        report.fail("ledger-completeness", str(exc))
        return
    try:
        db.execute("BEGIN")
        meta = ledger_meta(db)
        if meta.get("broker_id") != evidence.part.broker.id:
            report.fail("ledger-inclusion", f"the ledger is broker {meta.get('broker_id')!r}'s")
        stored_key = meta.get("broker_sign_key")
        if stored_key is not None and stored_key != evidence.broker_key.hex():
            report.fail("ledger-inclusion", "the ledger names another broker key")
        _inclusion(report, evidence, db)
        _completeness(report, evidence, db, codec)
        db.execute("COMMIT")
    except (sqlite3.DatabaseError, EvidenceError) as exc:
        report.fail("ledger-inclusion", f"cannot read {ledger}: {exc}")
    finally:
        db.close()


def _recomputed(db: sqlite3.Connection, through: int) -> Iterator[tuple[StoredEvent, bytes]]:
    """Each row up to ``through`` with its link hash recomputed from genesis."""
    link = GENESIS
    cursor = db.execute(
        "SELECT seq, stream, version, type, schema, at, body, hash FROM event_log"
        " WHERE seq <= ? ORDER BY seq",
        (through,),
    )
    while rows := cursor.fetchmany(CHUNK):
        for seq, stream, version, kind, schema, at, body, stored in rows:
            row = StoredEvent(seq, stream, version, kind, schema, at, bytes(body), bytes(stored))
            link = link_hash(link, seq, stream, version, kind, schema, at, row.body)
            yield row, link


def _differs(row: StoredEvent, item: EventItem) -> bool:
    other = item.row
    return (row.stream, row.version, row.type, row.schema, row.at, row.body) != (
        other.stream,
        other.version,
        other.type,
        other.schema,
        other.at,
        other.body,
    )


def _unlinked(wanted: dict[int, EventItem], chained: dict[int, bytes]) -> list[int]:
    """Bundle events whose link hashes are not the ledger's, recomputed from genesis."""
    return [
        seq
        for seq, item in sorted(wanted.items())
        if chained.get(seq) != item.row.hash or chained.get(seq - 1) != item.previous
    ]


def _inclusion(report: EvidenceReport, evidence: Evidence, db: sqlite3.Connection) -> None:
    """Recompute the chain from genesis to the bundle's head and find the bundle in it."""
    head_seq, head_hash = evidence.head
    wanted = {item.row.seq: item for item in evidence.events}
    needed = {*wanted, *(seq - 1 for seq in wanted), head_seq}
    chained: dict[int, bytes] = {0: GENESIS}
    seen: dict[int, StoredEvent] = {}
    reached, broken = 0, 0
    for row, link in _recomputed(db, head_seq):
        if row.seq != reached + 1:
            report.fail("ledger-inclusion", f"the ledger has no event {reached + 1}")
            return
        reached = row.seq
        if link != row.hash and not broken:
            broken = row.seq
        if row.seq in needed:
            chained[row.seq], seen[row.seq] = link, row
    if reached < head_seq:
        report.fail(
            "ledger-inclusion", f"the ledger ends at event {reached}, before the head {head_seq}"
        )
        return
    if broken:
        report.fail("ledger-inclusion", f"the ledger's own hash chain breaks at event {broken}")
    if differ := [
        seq for seq, item in sorted(wanted.items()) if seq not in seen or _differs(seen[seq], item)
    ]:
        report.fail("ledger-inclusion", f"the ledger holds other bytes at events {differ[:10]}")
    if unlinked := _unlinked(wanted, chained):
        report.fail(
            "ledger-inclusion",
            f"{len(unlinked)} event(s) are not in the ledger's hash chain with the bundle's"
            f" link hashes (first: event {unlinked[0]})",
        )
    if chained.get(head_seq) != head_hash:
        report.fail("ledger-inclusion", f"the ledger's hash at event {head_seq} is not the head")


def _completeness(
    report: EvidenceReport, evidence: Evidence, db: sqlite3.Connection, codec: EventCodec
) -> None:
    try:
        rows = collect(db, evidence.commitment_id, evidence.head[0], codec)
    except EvidenceError as exc:
        report.fail("ledger-completeness", str(exc))
        return
    in_ledger = {row.seq for row in rows}
    in_bundle = {item.row.seq for item in evidence.events}
    if missing := sorted(in_ledger - in_bundle):
        report.fail(
            "ledger-completeness",
            f"the bundle leaves out {len(missing)} event(s) about this commitment: {missing[:10]}",
        )
    if extra := sorted(in_bundle - in_ledger):
        report.fail(
            "ledger-completeness",
            f"the ledger does not relate event(s) {extra[:10]} to this commitment",
        )
