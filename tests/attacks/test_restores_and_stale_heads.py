"""Restores and re-deliveries: telling an old message from a rewritten history.

- Mosquitto restarting from an older snapshot re-delivers a stale retained ledger head:
  routine, logged at DEBUG, not the alarm operators would learn to ignore.
- A broker that signs another hash for a sequence number an agent holds: ERROR, and the
  evidence is kept and shown by ``micropay witness``.
- A broker ledger restored from a backup lost a confirmed redemption: the vendor holding
  the receipt re-sends it with its payword, and says so at ERROR.
- A vendor store restored from a backup would serve paid paywords again: the vendor
  learns the broker's record, says so at ERROR, and serves only what lies beyond it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import time
from pathlib import Path

import pytest

from agents.cli.main import main
from agents.daemons.vendor_agent import VendorAgent
from protocol.vendor import VendorTerms
from tests.agents.harness import wait_until
from tests.attacks.rogue import AttackHarness, buyer_core, halt_vendor, offered, rogue

QUICK_REDEEM = VendorTerms(redeem_interval=0.2)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def start_again(harness: AttackHarness, name: str, terms: VendorTerms) -> VendorAgent:
    """Start a (halted) vendor daemon from whatever its data directory holds now."""
    assert harness.info is not None
    vendor = await VendorAgent.open(
        harness.root / name, name, harness.info, terms, harness.mosquitto.user(name)
    )
    task = asyncio.create_task(vendor.run())
    harness.tasks.append(task)
    harness.vendor_tasks[name] = task
    harness.vendors[name] = vendor
    await asyncio.wait_for(vendor.loop.connected.wait(), 10)
    return vendor


@pytest.mark.asyncio
async def test_a_stale_head_from_an_older_mosquitto_snapshot_is_not_an_alarm(
    harness: AttackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="micropay.loop")
    vendor1 = await harness.start_vendor("vendor1", QUICK_REDEEM)
    broker = harness.daemon
    assert broker is not None
    store = broker.service.store
    mosquitto = harness.mosquitto
    await harness.serving("vendor1", "buyer1", 3)
    await harness.redeem("vendor1")
    await wait_until(lambda: vendor1.core.witnessed_seq == store.durable_head[0])

    mosquitto.process.stop()  # a clean stop saves the retained messages: an older snapshot
    snapshot = mosquitto.files.directory / "snapshot"
    shutil.copytree(mosquitto.files.directory / "state", snapshot)
    mosquitto.process.start()
    await wait_until(lambda: vendor1.loop.connected.is_set() and broker.loop.connected.is_set(), 30)
    await harness.serving("vendor1", "buyer1", 4)
    await harness.redeem("vendor1")
    await wait_until(lambda: vendor1.core.witnessed_seq == store.durable_head[0])

    # The broker stays down while Mosquitto comes back from the older snapshot, so its
    # fresh head cannot overwrite the stale retained one before the vendor re-subscribes.
    await harness.stop_broker()
    mosquitto.process.stop()
    shutil.rmtree(mosquitto.files.directory / "state")
    shutil.copytree(snapshot, mosquitto.files.directory / "state")
    caplog.clear()
    mosquitto.process.start()  # re-delivers the older retained head on every subscription
    await wait_until(vendor1.loop.connected.is_set, 30)
    # The older snapshot's head comes back to every agent: stale (or seen, if the agent
    # still holds a receipt at that seq), DEBUG only, never the rewrite alarm.
    highest = vendor1.core.witnessed_seq

    def older_head_redelivered() -> bool:
        found = (re.match(r"ledger head (\d+) \(broadcast\) re-delivered", r.getMessage())
                 for r in caplog.records)  # fmt: skip
        return any(match is not None and int(match[1]) < highest for match in found)

    await wait_until(older_head_redelivered)
    restarted = await harness.start_broker()
    await wait_until(restarted.loop.connected.is_set, 30)
    assert errors(caplog) == []
    await harness.serving("vendor1", "buyer1", 2)


@pytest.mark.asyncio
async def test_a_contradicting_head_is_an_error_and_witness_shows_it(
    harness: AttackHarness,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vendor1 = await harness.start_vendor("vendor1", QUICK_REDEEM)
    broker = harness.daemon
    assert broker is not None
    await harness.serving("vendor1", "buyer1", 3)
    await harness.redeem("vendor1")
    held = vendor1.core.ledger_view.highest
    assert held is not None
    caplog.clear()
    # The broker signs another hash for a sequence number it already vouched for.
    core = broker.service.core
    await broker.loop.act(lambda now: core.publish_ledger_head(held.seq, b"\xee" * 32, now))
    await wait_until(lambda: any("two different ledger heads" in m for m in errors(caplog)))
    await vendor1.loop.flush()  # the batch with the alarm is in the store

    out = tmp_path / "heads.jsonl"
    code = await asyncio.to_thread(
        main, ["witness", str(harness.root / "vendor1"), "--output", str(out)]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert f"ALARM: the broker signed head {held.seq}: a second, different hash" in err
    assert '"verdict": "contradiction"' in out.read_text()


@pytest.mark.asyncio
async def test_a_broker_restored_from_a_backup_gets_the_lost_redemption_back(
    harness: AttackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    vendor1 = await harness.start_vendor("vendor1", QUICK_REDEEM)
    core = await buyer_core(harness, "buyer1")
    broker_dir = harness.root / "broker"
    await harness.stop_broker()
    shutil.copytree(broker_dir, harness.root / "broker-backup")  # accounts, no redemption
    await harness.start_broker()
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1")
        cid = core.open_channel("vendor1", 100, time.time()).commitment_id
        core.pay(cid, 10, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.counters.amount == 10)
    await harness.redeem("vendor1")
    assert harness.credited("vendor1") == 10

    await harness.stop_broker()
    shutil.rmtree(broker_dir)
    shutil.copytree(harness.root / "broker-backup", broker_dir)  # the restore
    caplog.clear()
    await harness.start_broker()
    # The vendor holds the broker's signed receipt for a credit the restored ledger lacks:
    # it re-sends the redemption with its payword, and the broker credits it again.
    await wait_until(lambda: harness.credited("vendor1") == 10, 20)
    logged = errors(caplog)
    assert any("broker's state is behind" in m for m in logged), logged
    assert any("restored from an older copy or cut" in m for m in logged), logged
    assert harness.debited("buyer1") == 10
    await harness.broker_serving("vendor1")


@pytest.mark.asyncio
async def test_a_vendor_store_restored_from_a_backup_does_not_serve_paid_paywords_again(
    harness: AttackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    vendor1 = await harness.start_vendor("vendor1", QUICK_REDEEM)
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1")
        cid = core.open_channel("vendor1", 200, time.time()).commitment_id
        core.pay(cid, 5, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.counters.amount == 5)
        await harness.redeem("vendor1")
        await halt_vendor(harness, "vendor1")
        shutil.copytree(harness.root / "vendor1", harness.root / "vendor1-backup")

        vendor1 = await start_again(harness, "vendor1", QUICK_REDEEM)
        core.pay(cid, 50, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.counters.amount == 50)
        await harness.redeem("vendor1")
        assert harness.credited("vendor1") == 55
        await halt_vendor(harness, "vendor1")

        shutil.rmtree(harness.root / "vendor1")
        shutil.copytree(harness.root / "vendor1-backup", harness.root / "vendor1")  # restore
        caplog.clear()
        vendor1 = await start_again(harness, "vendor1", QUICK_REDEEM)
        # The broker's balance is above what the store holds: the vendor asks chain by
        # chain and takes the broker's record before the buyer's next payment.
        await wait_until(lambda: vendor1.core.chains[cid].redeemed == 55)
        logged = errors(caplog)
        assert any("ours state is behind" in m for m in logged), logged
        core.pay(cid, 5, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.counters.amount == 5)
    await harness.redeem("vendor1")
    assert vendor1.counters.amount == 5  # served 5 for 5 paid, not 55
    assert harness.credited("vendor1") == harness.debited("buyer1") == 60
