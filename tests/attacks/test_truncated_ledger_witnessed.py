"""A ledger cut back to an earlier, validly signed prefix: only the outside can tell.

Every reply that moves money carries the signed head of the commit that made it durable,
and each agent keeps those heads (the latest per commitment and the latest overall). A
ledger cut below any money event an agent was told about then contradicts a statement the
broker signed: ``micropay audit --witness`` fails, while the plain audit cannot see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from agents.cli.main import main
from broker_ledger import witness
from broker_ledger.audit import LedgerAudit
from protocol.crypto import AgentKeys
from protocol.ledger_heads import sign_head, verify_head
from tests.attacks.rogue import AttackHarness, paid


def export(store: Path, target: Path) -> Path:
    with target.open("w") as out:
        witness.write_lines(witness.read_store(store), out)
    return target


def cut(ledger: Path, through: int, signer: AgentKeys | None) -> None:
    """Drop every event after ``through``; with the broker's key, sign the new head too."""
    with sqlite3.connect(ledger) as db:
        db.execute("DELETE FROM events WHERE seq > ?", (through,))
        db.execute("DELETE FROM checkpoints WHERE seq > ?", (through,))
        if signer is not None:
            (head,) = db.execute("SELECT hash FROM events WHERE seq = ?", (through,)).fetchone()
            signed = sign_head(signer, "broker", through, bytes(head))
            db.execute(
                "INSERT OR REPLACE INTO checkpoints (seq, head, signature, at) VALUES (?, ?, ?, 0)",
                (through, signed.head, signed.signature),
            )
        for table in ("balances", "chains", "invoice_lines", "tracking"):
            db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names


@pytest.mark.asyncio
async def test_a_ledger_cut_below_a_money_event_fails_the_audit_against_the_agents_heads(
    harness: AttackHarness, tmp_path: Path
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    await paid(harness, 12, "buyer1")
    await harness.redeem("vendor1")
    broker = harness.daemon
    assert broker is not None
    identity = broker.service.core.identity
    await harness.stop_broker()
    ledger = broker.service.files.ledger
    key = identity.sign_key
    with sqlite3.connect(ledger) as db:
        (redeemed,) = db.execute(
            "SELECT MIN(seq) FROM events WHERE type = 'paywords-redeemed'"
        ).fetchone()

    # The redemption receipt carried the signed head that made the credit durable, and the
    # vendor kept it for that commitment.
    (receipt,) = [h for h in await vendor1.store.heads() if h.scope]
    assert receipt.seq >= redeemed
    heads = [
        export(harness.root / name / store, tmp_path / f"{name}.jsonl")
        for name, store in (("vendor1", "store.db"), ("buyer1", "wallet.db"))
    ]
    args = ["audit", str(ledger), "--broker-key", key.hex(), "--no-progress"]
    witnessed = [arg for path in heads for arg in ("--witness", str(path))]
    assert await asyncio.to_thread(main, [*args, *witnessed]) == 0

    for name, signer, through in (
        # Anyone who can write the file: back to the empty ledger the broker signed at init.
        ("emptied", None, 0),
        # The operator, with the broker's key: back to just before the redemption, re-signed.
        ("cut-and-resigned", identity, redeemed - 1),
    ):
        copy = tmp_path / f"{name}.db"
        with (  # SQLite's backup API: what is still in the WAL comes along (SECURITY row 49)
            contextlib.closing(sqlite3.connect(ledger)) as source,
            contextlib.closing(sqlite3.connect(copy)) as target,
        ):
            source.backup(target)
        cut(copy, through, signer)
        plain = LedgerAudit(copy, key).run()
        assert plain.ok, plain.findings  # a validly signed prefix: nothing inside shows the cut
        report = LedgerAudit(copy, key).run()
        for path in heads:
            witness.check_witnesses(report, copy, witness.read_lines(path), key)
        assert not report.ok
        first = report.first_failure
        assert first is not None
        assert first.check == "witnessed-heads"
        assert first.seq is not None
        assert first.seq > through
        assert "the ledger ends at" in first.detail
        copied = [*args[:1], str(copy), *args[2:]]
        assert await asyncio.to_thread(main, [*copied, *witnessed]) == 1


@pytest.mark.asyncio
async def test_every_money_reply_carries_the_signed_head_of_its_commit(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    await paid(harness, 7, "buyer1")
    await harness.redeem("vendor1")
    buyer = await harness.buyer("buyer1")
    balance = await buyer.run(buyer.balance)
    broker = harness.daemon
    assert broker is not None
    key = broker.service.core.identity.sign_key
    assert balance.ledger is not None
    verify_head(key, "broker", balance.ledger)
    durable, _ = broker.service.store.durable_head
    assert balance.ledger.seq == durable  # the balance reflects everything durable
    kept = {h.scope: h for h in await vendor1.store.heads()}
    assert set(kept) == {b"", *vendor1.core.chains}  # the latest overall, one per commitment
    wallet = await harness.buyer("buyer1")
    wallet_heads = await wallet.store.heads()
    await wallet.store.close()
    (latest,) = wallet_heads  # a buyer holds no commitment receipts: the latest overall
    assert latest.scope == b""
    assert latest.seq >= balance.ledger.seq
