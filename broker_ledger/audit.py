"""Re-verify a ledger from nothing but its bytes and the broker's public key.

One pass in sequence order checks the hash links, stream versions and every event's
evidence: certificate and commitment signatures (on a thread pool: Ed25519 verification
releases the GIL, so two cores verify at once), each redemption's payword against the
commitment's chain, the billing of every closed period, and the money invariants. The
read models are recomputed with the same ``fold`` the projector uses and compared with
the stored tables. Checkpoint signatures pin the chain's head to the broker's key.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from broker_ledger import checks
from broker_ledger.audit_result import CHECK_NAMES, AuditReport
from broker_ledger.codec import DEFAULT_CODEC, EventCodec, EventDecodeError
from broker_ledger.format import GENESIS, link_hash
from broker_ledger.ledger_keys import key_history, read_rotations
from broker_ledger.projections import PROJECTION, ReadModels
from broker_ledger.report_data import ReportData
from broker_ledger.store_schema import FORMAT
from protocol.broker_events import AnyBrokerEvent
from protocol.trusted_keys import TrustedKeys

Progress = Callable[[int, int], None]
CHUNK: Final = 20_000


class LedgerAudit:
    """One audit run over one ledger file."""

    def __init__(  # noqa: PLR0913 - keyword-only options, each with a default
        self,
        path: str | Path,
        broker_key: bytes | None = None,
        *,
        codec: EventCodec = DEFAULT_CODEC,
        workers: int = 2,
        progress: Progress | None = None,
        collect: ReportData | None = None,
    ) -> None:
        self.path = Path(path)
        self.report = AuditReport(str(path))
        self.report.passed = dict.fromkeys(CHECK_NAMES, True)
        self._broker_key = broker_key
        self._codec = codec
        self._workers = workers
        self._progress = progress
        self._collect = collect

    def run(self) -> AuditReport:
        """Audit the file; never raises for what is in it (everything becomes a finding)."""
        started = time.perf_counter()
        report = self.report
        if not self.path.is_file():
            report.fail(None, "sequence", f"no ledger file at {self.path}")
            return report
        uri = f"file:{self.path.resolve()}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
                self._audit(db)
        except sqlite3.DatabaseError as exc:
            report.fail(None, "sequence", f"cannot read the ledger: {exc}")
        report.seconds = time.perf_counter() - started
        return report

    def _audit(self, db: sqlite3.Connection) -> None:
        report = self.report
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT:
            report.fail(None, "event-schemas", f"not a {FORMAT} file")
            return
        report.broker_id = meta.get("broker_id", "")
        key = self._broker_key
        if key is None:
            stored = meta.get("broker_sign_key")
            key = bytes.fromhex(stored) if stored else None
            report.key_source = "taken from the ledger itself: pass --broker-key to trust nothing"
        else:
            report.key_source = "given on the command line"
        if key is None:
            report.fail(None, "checkpoint-signatures", "no broker public key to verify against")
            key = bytes(32)
        history = key_history(report.broker_id, read_rotations(db, self._codec), key)
        for seq, problem in history.problems:
            report.fail(seq, "key-rotations", problem)
        keys = history.keys
        report.key_rotations = keys.generation
        checkpoints = {
            int(seq): (bytes(head), bytes(signature))
            for seq, head, signature in db.execute("SELECT seq, head, signature FROM checkpoints")
        }
        total = db.execute("SELECT COUNT(*) FROM event_log").fetchone()[0]
        position = _tracking_position(db)
        with ThreadPoolExecutor(self._workers, thread_name_prefix="audit-verify") as pool:
            verifier = checks.Verifier(report.broker_id, keys, pool, report, position)
            computed = self._scan(db, verifier, set(checkpoints), total)
            verifier.finish()
        if self._collect is not None:
            self._collect.finish(verifier.models)
        self._check_checkpoints(checkpoints, computed, keys)
        self._check_projections(db, verifier)

    def _scan(
        self,
        db: sqlite3.Connection,
        verifier: checks.Verifier,
        checkpoint_seqs: set[int],
        total: int,
    ) -> dict[int, bytes]:
        report = self.report
        decode = self._codec.decode
        check = self._checker(verifier)
        versions: dict[str, int] = {}
        computed_at: dict[int, bytes] = {0: GENESIS}
        previous_stored = previous_computed = GENESIS
        expected_seq = 1
        cursor = db.execute(
            "SELECT seq, stream, version, type, schema, at, body, hash FROM event_log ORDER BY seq"
        )
        while rows := cursor.fetchmany(CHUNK):
            for seq, stream, version, kind, schema, at, body, stored_hash in rows:
                if seq != expected_seq:
                    report.fail(
                        expected_seq, "sequence", f"event {expected_seq} is missing (next: {seq})"
                    )
                expected_seq = seq + 1
                # Chain from the stored hash too, so only the tampered row is reported; the
                # chain from genesis is what the signed checkpoints are compared with.
                link = link_hash(previous_stored, seq, stream, version, kind, schema, at, body)
                if link != stored_hash:
                    report.fail(seq, "hash-links", "stored hash does not match the row's bytes")
                if previous_computed == previous_stored:
                    previous_computed = link
                else:
                    previous_computed = link_hash(
                        previous_computed, seq, stream, version, kind, schema, at, body
                    )
                previous_stored = stored_hash
                if seq in checkpoint_seqs:
                    computed_at[seq] = previous_computed
                if version != versions.get(stream, 0) + 1:
                    report.fail(seq, "stream-versions", f"{stream} jumps to version {version}")
                versions[stream] = version
                report.head_seq, report.head_at = seq, at
                try:
                    event = decode(kind, schema, body)
                except EventDecodeError as exc:
                    report.fail(seq, "event-schemas", str(exc))
                    continue
                check(seq, event)
            report.events += len(rows)
            if self._progress is not None:
                self._progress(report.events, total)
        report.streams = len(versions)
        report.head_hash = computed_at[-1] = previous_computed
        return computed_at

    def _checker(self, verifier: checks.Verifier) -> Callable[[int, AnyBrokerEvent], None]:
        """The verifier's check, also feeding the HTML report's aggregates when asked."""
        collect = self._collect
        if collect is None:
            return verifier.check
        verify, gather = verifier.check, collect.add

        def both(seq: int, event: AnyBrokerEvent) -> None:
            verify(seq, event)
            gather(event)

        return both

    def _check_checkpoints(
        self,
        checkpoints: dict[int, tuple[bytes, bytes]],
        computed: dict[int, bytes],
        keys: TrustedKeys,
    ) -> None:
        """Each checkpoint under the key in force at its ``seq``: before a rotation, the old."""
        report = self.report
        last_event = report.events
        covered = 0
        for seq in sorted(checkpoints):
            head, signature = checkpoints[seq]
            key = keys.for_seq(seq)
            if not checks.checkpoint_signed(report.broker_id, key, seq, head, signature):
                report.fail(seq, "checkpoint-signatures", "checkpoint signature does not verify")
                continue
            report.checkpoints += 1
            covered = max(covered, seq)
            if seq not in computed:
                report.fail(
                    last_event + 1,
                    "checkpoint-signatures",
                    f"the ledger ends at {last_event} but a signed checkpoint covers {seq}:"
                    " events were truncated",
                )
            elif computed[seq] != head:
                report.fail(seq, "checkpoint-signatures", "history differs from the signed head")
        report.unsigned_tail = last_event - min(covered, last_event)
        if report.unsigned_tail:
            # The broker signs the head of every commit: an uncovered tail was appended by
            # someone without its key, or had its signatures deleted.
            report.fail(
                covered + 1,
                "signed-head",
                f"events {covered + 1}..{last_event} are not covered by a broker signature",
            )

    def _check_projections(self, db: sqlite3.Connection, verifier: checks.Verifier) -> None:
        report = self.report
        position = _tracking_position(db)
        if position is None:
            report.passed.pop("projections", None)
            return
        report.projection_position = position
        expected = verifier.models_at(position)
        if expected is None:
            report.fail(position, "projections", f"tracking position {position} is past the end")
            return
        for problem in compare_models(db, expected):
            report.fail(position, "projections", problem)


def _tracking_position(db: sqlite3.Connection) -> int | None:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    if "tracking" not in tables:
        return None
    found = db.execute(
        "SELECT position FROM tracking WHERE projection = ?", (PROJECTION,)
    ).fetchone()
    return int(found[0]) if found else 0


def compare_models(db: sqlite3.Connection, expected: ReadModels) -> list[str]:
    """Differences between stored read-model tables and recomputed ones."""
    problems = []
    balances = {row[0]: tuple(row[1:]) for row in db.execute("SELECT * FROM balances")}
    for account, row in expected.balances.items():
        want = (row.debited, row.credited, row.reserved, row.settled, row.fees)
        if balances.pop(account, None) != want:
            problems.append(f"balance of {account} differs from the events")
    problems.extend(f"balance of {a} has no events behind it" for a in balances)
    chains = {bytes(row[0]): tuple(row[1:]) for row in db.execute("SELECT * FROM chains")}
    for cid, chain in expected.chains.items():
        want_chain = (
            chain.buyer,
            chain.vendor,
            chain.length,
            chain.unit_value,
            chain.redeemed_index,
            chain.amount,
            chain.reserved,
        )
        if chains.pop(cid, None) != want_chain:
            problems.append(f"chain {cid.hex()[:16]} differs from the events")
    problems.extend(f"chain {c.hex()[:16]} has no events behind it" for c in chains)
    lines = {
        (row[0], row[1], row[3]): (row[2], row[4], row[5])
        for row in db.execute("SELECT * FROM invoice_lines")
    }
    for line_key, line in expected.lines.items():
        if lines.pop(line_key, None) != line:
            problems.append(f"invoice line {line_key} differs from the events")
    problems.extend(f"invoice line {k} has no events behind it" for k in lines)
    problems.extend(compare_scrip(db, expected))
    return problems


def compare_scrip(db: sqlite3.Connection, expected: ReadModels) -> list[str]:
    """Differences between the stored ``scrip`` table and the recomputed rows."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    stored = (
        {int(row[0]): tuple(row[1:]) for row in db.execute("SELECT * FROM scrip")}
        if "scrip" in tables
        else {}
    )
    problems = [
        f"scrip serial {serial} differs from the events"
        for serial, row in expected.scrip.items()
        if stored.pop(serial, None) != row.as_tuple()
    ]
    problems.extend(f"scrip serial {s} has no events behind it" for s in stored)
    return problems
