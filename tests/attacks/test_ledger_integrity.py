"""Stripping the ledger's evidence: deleted checkpoints, a cut tail, a consistent rewrite.

Whoever can write the ledger file (but lacks the broker's key) edits a copy of a real
ledger. Each copy must fail ``micropay audit`` at the first uncovered or bad sequence
number, and the broker must refuse to start on it and sign nothing: every commit is
signed in its own transaction, so only the broker's key can make a tail look finished.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from agents.cli.main import main
from agents.daemons.broker_service import BrokerService
from broker_ledger.audit import LedgerAudit
from broker_ledger.store import LedgerIntegrityError
from protocol import chain
from tests.attacks.rogue import AttackHarness, paid
from tests.ledger.helpers import relink

Tamper = Callable[[sqlite3.Connection], None]


@pytest_asyncio.fixture
async def ledger_dir(harness: AttackHarness) -> Path:
    """A stopped broker's data directory after real payments and redemptions."""
    await harness.start_vendor("vendor1")
    await paid(harness, 40, "buyer1")
    await paid(harness, 25, "buyer2")
    await harness.redeem("vendor1")
    await harness.stop_broker()
    return harness.root / "broker"


def sign_key(directory: Path) -> bytes:
    return bytes.fromhex(
        sqlite3.connect(directory / "ledger.db")
        .execute("SELECT value FROM meta WHERE key = 'broker_sign_key'")
        .fetchone()[0]
    )


def copy_of(directory: Path, name: str, tamper: Tamper) -> Path:
    copy = directory.parent / name
    shutil.copytree(directory, copy)
    db = sqlite3.connect(copy / "ledger.db")
    with db:
        tamper(db)
    db.close()
    return copy


def strip_checkpoints(db: sqlite3.Connection) -> None:
    """The review's recipe: cut the tail, then remove what would have shown it."""
    db.execute("DELETE FROM events WHERE seq > 10")
    db.execute("DELETE FROM checkpoints")
    db.execute("DROP TABLE tracking")


def cut_tail(db: sqlite3.Connection) -> None:
    (last,) = db.execute("SELECT MAX(seq) FROM events").fetchone()
    db.execute("DELETE FROM events WHERE seq > ?", (last - 2,))


def cut_tail_and_its_checkpoints(db: sqlite3.Connection) -> None:
    (last,) = db.execute("SELECT MAX(seq) FROM events").fetchone()
    db.execute("DELETE FROM events WHERE seq > ?", (last - 2,))
    db.execute("DELETE FROM checkpoints WHERE seq > ?", (last - 2,))


def lower_a_redemption(db: sqlite3.Connection) -> None:
    """A consistent rewrite: one redemption lowered by 5 units, its payword hashed down.

    Links are recomputed, checkpoints and tracking removed, read models emptied: every
    check the audit had before commits were signed passes on the result.
    """
    seq, body = db.execute(
        "SELECT seq, body FROM events WHERE type = 'paywords-redeemed' ORDER BY seq LIMIT 1"
    ).fetchone()
    fields = msgspec.msgpack.decode(body)
    fields["payword"] = chain.walk(fields["payword"], fields["index"], 5)
    fields["index"] -= 5
    fields["units"] -= 5
    fields["amount"] -= 5
    db.execute("UPDATE events SET body = ? WHERE seq = ?", (msgspec.msgpack.encode(fields), seq))
    relink(db)
    db.execute("DELETE FROM checkpoints")
    for table in ("balances", "chains", "invoice_lines"):
        db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    db.execute("DROP TABLE tracking")


def last_seq(directory: Path) -> int:
    with sqlite3.connect(directory / "ledger.db") as db:
        return int(db.execute("SELECT MAX(seq) FROM events").fetchone()[0])


def checkpoints(directory: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(directory / "ledger.db") as db:
        return [(int(s), bytes(h)) for s, h in db.execute("SELECT seq, head FROM checkpoints")]


CASES: dict[str, tuple[Tamper, Callable[[int], tuple[int, str]]]] = {
    # name: (the tampering, the first failure the audit must name given the original last seq)
    "checkpoints-stripped": (strip_checkpoints, lambda _: (1, "signed-head")),
    "tail-cut": (cut_tail, lambda last: (last - 1, "checkpoint-signatures")),
    "tail-and-checkpoints-cut": (cut_tail_and_its_checkpoints, lambda _: (1, "signed-head")),
    "redemption-lowered-and-relinked": (lower_a_redemption, lambda _: (1, "signed-head")),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.asyncio
async def test_stripped_or_rewritten_ledger_fails_the_audit_and_the_broker_refuses_it(
    ledger_dir: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = sign_key(ledger_dir)
    assert LedgerAudit(ledger_dir / "ledger.db", key).run().ok
    last = last_seq(ledger_dir)
    tamper, expected = CASES[case]
    copy = copy_of(ledger_dir, case, tamper)

    report = LedgerAudit(copy / "ledger.db", key).run()
    first = report.first_failure
    assert first is not None
    assert (first.seq, first.check) == expected(last), report.findings
    if case == "redemption-lowered-and-relinked":
        # consistent in every other respect: only the missing signatures give it away
        assert {f.check for f in report.findings} == {"signed-head"}

    signed_before = checkpoints(copy)
    with pytest.raises(LedgerIntegrityError, match="micropay audit") as refused:
        await BrokerService.open(copy)
    assert refused.value.seq == first.seq
    assert await asyncio.to_thread(main, ["broker", "status", "--data-dir", str(copy)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "fails its integrity check" in err[0]
    assert "micropay audit" in err[0]
    assert checkpoints(copy) == signed_before  # nothing was signed


@pytest.mark.asyncio
async def test_an_operator_signs_an_audited_unsigned_tail_and_nothing_else(
    ledger_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ledger of an earlier version that stopped uncleanly: its last events are unsigned."""
    key = sign_key(ledger_dir)
    last = last_seq(ledger_dir)

    def unsigned_tail(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM checkpoints WHERE seq > 0")

    copy = copy_of(ledger_dir, "legacy", unsigned_tail)
    report = LedgerAudit(copy / "ledger.db", key).run()
    assert {f.check for f in report.findings} == {"signed-head"}  # all the audit objects to
    with pytest.raises(LedgerIntegrityError):
        await BrokerService.open(copy)

    def sign(through: int) -> int:
        argv = ["broker", "sign-tail", "--through", str(through), "--data-dir", str(copy)]
        return main(argv)

    assert await asyncio.to_thread(sign, last - 1) == 1  # not what the audit saw: refused
    assert "audit it again" in capsys.readouterr().err
    assert await asyncio.to_thread(sign, last) == 0
    assert LedgerAudit(copy / "ledger.db", key).run().ok
    service = await BrokerService.open(copy)
    await service.close()

    # A tail edited before it is signed: the links are checked first, nothing is signed.
    def edited(db: sqlite3.Connection) -> None:
        unsigned_tail(db)
        db.execute("UPDATE events SET at = at + 1 WHERE seq = ?", (last,))

    forged = copy_of(ledger_dir, "legacy-edited", edited)
    before = checkpoints(forged)
    argv = ["broker", "sign-tail", "--through", str(last), "--data-dir", str(forged)]
    assert await asyncio.to_thread(main, argv) == 1
    assert "fails its integrity check" in capsys.readouterr().err
    assert checkpoints(forged) == before
