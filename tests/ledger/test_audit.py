"""The audit on real SQLite files: a clean ledger passes, every kind of tampering is caught."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest

from broker_ledger.audit import LedgerAudit
from broker_ledger.audit_result import AuditReport
from broker_ledger.format import GENESIS, link_hash
from broker_ledger.store import EventStore
from protocol.broker_events import PaywordsRedeemed
from tests.ledger.scenario import LedgerRun, build_ledger
from tests.support.world import seeded_identity

BROKER_KEY = seeded_identity("broker").sign_key


@pytest.fixture(scope="module")
def clean_ledger(tmp_path_factory: pytest.TempPathFactory) -> LedgerRun:
    path = tmp_path_factory.mktemp("ledger") / "clean.db"
    return asyncio.run(build_ledger(path, fee_basis_points=250))


@pytest.fixture
def ledger(clean_ledger: LedgerRun, tmp_path: Path) -> Path:
    copy = tmp_path / "copy.db"
    shutil.copy(clean_ledger.path, copy)
    return copy


def audit(path: Path) -> AuditReport:
    return LedgerAudit(path, BROKER_KEY).run()


def tamper(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)


def test_a_clean_ledger_passes_every_check(clean_ledger: LedgerRun) -> None:
    report = audit(clean_ledger.path)
    assert report.ok, report.findings
    assert all(report.passed.values())
    assert report.debited == report.credited == clean_ledger.paid
    assert report.redemptions > 10
    assert report.commitments == 6
    assert report.checkpoints >= 2
    assert report.unsigned_tail == 0  # the store signs its head when it closes
    assert report.signatures_verified >= report.commitments + report.certificates
    assert report.periods == 1
    summary = clean_ledger.summary
    assert summary is not None
    assert (
        report.fees
        == summary.fees
        == sum((line_total * 250) // 10_000 for line_total in _vendor_gross(clean_ledger))
    )
    assert report.projection_position == report.events - 0


def _vendor_gross(run: LedgerRun) -> list[int]:
    return [run.world.broker.totals.credited[name] for name in sorted(run.world.vendors)]


def count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def test_an_edited_body_is_caught_at_its_sequence_number(ledger: Path) -> None:
    tamper(ledger, "UPDATE events SET body = CAST(body || x'00' AS BLOB) WHERE seq = 17")
    report = audit(ledger)
    assert not report.ok
    first = report.first_failure
    assert first is not None
    assert (first.seq, first.check) == (17, "hash-links")


def test_a_deleted_row_is_caught(ledger: Path) -> None:
    tamper(ledger, "DELETE FROM events WHERE seq = 23")
    first = audit(ledger).first_failure
    assert first is not None
    assert first.seq == 23
    assert first.check in {"sequence", "hash-links"}


def test_two_swapped_rows_are_caught(ledger: Path) -> None:
    tamper(
        ledger,
        "UPDATE events SET seq = -1 WHERE seq = 30",
        "UPDATE events SET seq = 30 WHERE seq = 31",
        "UPDATE events SET seq = 31 WHERE seq = -1",
    )
    first = audit(ledger).first_failure
    assert first is not None
    assert first.seq == 30


def test_a_truncated_tail_is_caught(ledger: Path) -> None:
    total = count(ledger)
    with sqlite3.connect(ledger) as db:
        db.execute("DELETE FROM events WHERE seq > ?", (total - 3,))
    report = audit(ledger)
    first = report.first_failure
    assert first is not None
    assert first.seq == total - 2
    assert "truncated" in first.detail


def test_a_forged_checkpoint_is_caught(ledger: Path) -> None:
    with sqlite3.connect(ledger) as db:
        # the first checkpoint after the empty ledger's own (seq 0)
        seq = db.execute("SELECT MIN(seq) FROM checkpoints WHERE seq > 0").fetchone()[0]
        db.execute("UPDATE checkpoints SET head = zeroblob(32) WHERE seq = ?", (seq,))
    first = audit(ledger).first_failure
    assert first is not None
    assert (first.seq, first.check) == (seq, "checkpoint-signatures")


def test_a_rewritten_history_with_recomputed_hashes_is_caught_by_the_checkpoint(
    ledger: Path,
) -> None:
    with sqlite3.connect(ledger) as db:
        db.execute("UPDATE events SET at = at + 1 WHERE seq = 12")
        previous = GENESIS
        rows = db.execute(
            "SELECT seq, stream, version, type, schema, at, body FROM event_log ORDER BY seq"
        ).fetchall()
        for seq, stream, version, kind, schema, at, body in rows:
            previous = link_hash(previous, seq, stream, version, kind, schema, at, body)
            db.execute("UPDATE events SET hash = ? WHERE seq = ?", (previous, seq))
        first_checkpoint = db.execute(
            "SELECT MIN(seq) FROM checkpoints WHERE seq >= 12"
        ).fetchone()[0]
    report = audit(ledger)
    assert not report.passed["checkpoint-signatures"]
    assert report.passed["hash-links"]
    first = report.first_failure
    assert first is not None
    assert first.seq == first_checkpoint


def test_a_doctored_projection_is_caught(ledger: Path) -> None:
    tamper(ledger, "UPDATE balances SET debited = debited + 1 WHERE account = 'buyer1'")
    report = audit(ledger)
    assert not report.ok
    assert not report.passed["projections"]
    assert all(ok for name, ok in report.passed.items() if name != "projections")


@pytest.mark.asyncio
async def test_a_fraudulent_broker_cannot_credit_an_unpaid_payword(ledger: Path) -> None:
    """Valid hash links and checkpoints, but the evidence does not hold up."""
    store = await EventStore.open(ledger, "broker", signer=seeded_identity("broker"))
    registered = (await store.read_type("paywords-redeemed"))[-1]
    real = store.decode(registered)
    assert isinstance(real, PaywordsRedeemed)
    forged = PaywordsRedeemed(
        at=real.at + 1,
        commitment_id=real.commitment_id,
        buyer=real.buyer,
        vendor=real.vendor,
        commitment=real.commitment,
        from_index=real.index,
        index=real.index + 50,
        payword=b"\x11" * 32,
        units=50,
        amount=50 * (real.amount // real.units),
    )
    rows = await store.append_events([forged])
    await store.close()
    report = audit(ledger)
    first = report.first_failure
    assert first is not None
    assert (first.seq, first.check) == (rows[0].seq, "payword-chains")


def test_the_key_from_the_ledger_itself_is_flagged(clean_ledger: LedgerRun) -> None:
    report = LedgerAudit(clean_ledger.path).run()
    assert report.ok
    assert "taken from the ledger" in report.key_source


def test_a_wrong_broker_key_fails_the_signatures(clean_ledger: LedgerRun) -> None:
    report = LedgerAudit(clean_ledger.path, seeded_identity("impostor").sign_key).run()
    assert not report.ok
    assert not report.passed["checkpoint-signatures"]
    assert not report.passed["certificate-signatures"]


def test_a_missing_file_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    report = audit(tmp_path / "nope.db")
    assert not report.ok
    assert report.first_failure is not None
