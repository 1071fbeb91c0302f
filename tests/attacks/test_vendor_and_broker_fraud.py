"""A vendor over-claiming at redemption; a broker rewriting its ledger."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from agents.cli.main import main
from broker_ledger import witness
from broker_ledger.audit import LedgerAudit
from broker_ledger.format import TAG_CHECKPOINT, checkpoint_message
from protocol.messages import Redeem
from tests.agents.harness import wait_until
from tests.attacks.rogue import (
    AttackHarness,
    halt_vendor,
    paid,
    queue_redeem,
    rogue,
)
from tests.ledger.helpers import relink as relink_all


@pytest.mark.asyncio
async def test_vendor_claiming_more_than_it_received_is_refused(harness: AttackHarness) -> None:
    await harness.start_vendor("vendor1")
    cid = await paid(harness, 10)
    greedy = (await halt_vendor(harness, "vendor1")).core
    state = greedy.chains[cid]
    signed = state.verified.signed
    claims = [
        Redeem(signed, 20, bytes(32)),  # beyond what it received: it cannot invert the hash
        Redeem(signed, 11, state.word),  # the real last payword, claimed one step further
        Redeem(signed, 101, bytes(32)),  # beyond the chain's length
        Redeem(signed, 2**32 - 1, bytes(32)),  # a huge claim: refused before any hashing
    ]
    for claim in claims:
        queue_redeem(greedy, claim.commitment, claim.index, claim.payword)
    queue_redeem(greedy, signed, state.index, state.word)  # and the honest claim
    broker = harness.daemon
    assert broker is not None
    async with rogue(harness.mosquitto, "vendor1", greedy) as attacker:
        await attacker.flush()
        await wait_until(lambda: harness.credited("vendor1") == 10)
        await wait_until(lambda: broker.loop.rejections["redemption"] == 4)
    assert harness.debited("buyer1") == 10
    assert broker.service.core.chains[cid].index == 10
    await harness.broker_serving("vendor2")


def tamper(ledger: str, event_type: str, field: str, value: int, relink: bool) -> None:
    """Edit one field of the first event of a type; optionally recompute every link after."""
    db = sqlite3.connect(ledger)
    with db:
        seq, body = db.execute(
            "SELECT seq, body FROM events WHERE type = ? ORDER BY seq LIMIT 1", (event_type,)
        ).fetchone()
        fields = msgspec.msgpack.decode(body)
        fields[field] = value
        db.execute(
            "UPDATE events SET body = ? WHERE seq = ?", (msgspec.msgpack.encode(fields), seq)
        )
        if relink:  # a forger without the broker's key can redo the hashes, not the signature
            relink_all(db)
    db.close()


@pytest.mark.parametrize("relink", [False, True], ids=["edited", "edited-and-relinked"])
@pytest.mark.asyncio
async def test_rewritten_ledger_history_fails_the_audit(
    harness: AttackHarness, relink: bool
) -> None:
    await harness.start_vendor("vendor1")
    await paid(harness, 10)
    await harness.redeem("vendor1")
    await harness.stop_broker()
    broker = harness.daemon
    assert broker is not None
    ledger = str(broker.service.files.ledger)
    key = broker.service.core.identity.sign_key
    assert LedgerAudit(ledger, key).run().ok
    redeemed = (
        sqlite3.connect(ledger)
        .execute("SELECT type FROM events WHERE type LIKE '%redeemed%' LIMIT 1")
        .fetchone()[0]
    )

    tamper(ledger, redeemed, "amount", 1_000, relink)  # the broker inflates a redemption

    report = LedgerAudit(ledger, key).run()
    failed = {check for check, held in report.passed.items() if not held}
    assert not report.ok
    # Links recomputed by the forger still break the broker's signed checkpoints (and the
    # inflated amount no longer matches the paywords' units).
    assert "checkpoint-signatures" in failed if relink else "hash-links" in failed
    assert "redemption-arithmetic" in failed


@pytest.mark.asyncio
async def test_broker_rewriting_history_with_its_own_key_is_caught_by_witnesses(
    harness: AttackHarness, tmp_path: Path
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    await paid(harness, 10)
    await harness.redeem("vendor1")
    broker = harness.daemon
    assert broker is not None
    store = broker.service.store
    await wait_until(lambda: vendor1.core.witnessed_seq == store.durable_head[0])
    await harness.stop_broker()
    heads = tmp_path / "vendor1-heads.jsonl"
    with heads.open("w") as out:
        assert witness.write_lines(witness.read_store(harness.root / "vendor1" / "store.db"), out)
    ledger = broker.service.files.ledger
    key = broker.service.core.identity.sign_key
    assert main(["audit", str(ledger), "--witness", str(heads), "--broker-key", key.hex()]) == 0

    # The operator, holding the broker's key, erases vendor1's redemption: drops it and
    # what follows, signs a fresh checkpoint, and resets the projections. Every internal
    # check of the audit passes on the result.
    db = sqlite3.connect(ledger)
    with db:
        (seq,) = db.execute("SELECT MIN(seq) FROM events WHERE type LIKE '%redeemed%'").fetchone()
        db.execute("DELETE FROM events WHERE seq >= ?", (seq,))
        db.execute("DELETE FROM checkpoints WHERE seq >= ?", (seq - 1,))
        (head,) = db.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()
        signature = broker.service.core.identity.sign(
            TAG_CHECKPOINT, checkpoint_message("broker", seq - 1, head)
        )
        db.execute(
            "INSERT INTO checkpoints (seq, head, signature, at) VALUES (?, ?, ?, ?)",
            (seq - 1, head, signature, 0),
        )
        for table in ("balances", "chains", "invoice_lines", "tracking"):
            db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    db.close()
    assert LedgerAudit(ledger, key).run().ok

    # vendor1 kept the heads the broker signed while serving: they contradict the rewrite.
    assert main(["audit", str(ledger), "--witness", str(heads), "--broker-key", key.hex()]) == 1
    report = LedgerAudit(ledger, key).run()
    witness.check_witnesses(report, ledger, witness.read_lines(heads), key)
    assert not report.ok
    assert {f.check for f in report.findings} == {"witnessed-heads"}
