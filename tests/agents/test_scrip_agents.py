"""Scrip between a vendor daemon, a wallet and the broker daemon, over a real Mosquitto."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agents.daemons.buyer_agent import BuyerAgent, BuyerError
from agents.daemons.buyer_scrip import mint, pay_with_scrip
from agents.daemons.vendor_agent import VendorAgent
from protocol.events import ScripAccepted, VendorEvent
from protocol.messages import OfferItem
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker
from tests.agents.harness import Harness, wait_until

TERMS = VendorTerms(items=(OfferItem("article", 30),), scrip=True, redeem_interval=0.5)


async def start(harness: Harness) -> BuyerAgent:
    await harness.start_broker()
    await harness.start_vendor("vendor1", TERMS)
    await harness.enroll_buyer("buyer1")
    return await harness.buyer("buyer1")


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


async def reopen_vendor(harness: Harness) -> VendorAgent:
    assert harness.info is not None
    again = await VendorAgent.open(
        harness.root / "vendor1", "vendor1", harness.info, TERMS, harness.mosquitto.user("vendor1")
    )
    harness.tasks.append(asyncio.create_task(again.run()))
    harness.vendors["vendor1"] = again
    await asyncio.wait_for(again.loop.connected.wait(), 10)
    return again


@pytest.mark.asyncio
async def test_the_spent_set_survives_a_restart_and_refuses_a_double_spend(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    buyer = await start(harness)
    result = await buyer.run(
        lambda: pay_with_scrip(buyer, "vendor1", 2, 30, item="article", mint_value=100)
    )
    assert (result.payments, result.paid, result.minted, result.held) == (2, 60, 100, 40)
    vendor = harness.vendors["vendor1"]
    assert vendor.counters.scrip_payments == 2
    await wait_until(lambda: vendor.core.scrip_awaiting_deposit == 0)  # deposited
    assert harness.daemon is not None
    record = harness.daemon.service.core.scrip.records[1]
    assert (record.generation, record.price, record.credited) == (1, 30, 60)

    await vendor.shutdown(within=2)
    await asyncio.wait_for(harness.tasks.pop(), 20)
    store = tmp_path / "vendor1" / "store.db"
    ((serial, generation, confirmed),) = rows(
        store, "SELECT serial, generation, confirmed FROM spent_scrip"
    )
    assert (serial, generation, confirmed) == (1, 1, 1)
    again = await reopen_vendor(harness)
    assert again.core.spent_scrip[1].generation == 1

    # The wallet is restored from an older copy: it holds generation 1 again.
    spent = again.core.spent_scrip[1].spent
    wallet = await harness.buyer("buyer1")
    wallet.core.restore_scrip(spent, next(iter(buyer.core.scrip_secrets.values())))
    with pytest.raises(BuyerError, match=r"refused the scrip payment: spent \(scrip\)"):
        await wallet.run(lambda: pay_with_scrip(wallet, "vendor1", 1, 30, timeout=10))
    assert again.counters.scrip_payments == 0
    await harness.stop()


@pytest.mark.asyncio
async def test_a_vendor_killed_between_its_record_and_its_reply_repeats_the_answer(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    buyer = await start(harness)
    await buyer.run(lambda: mint(buyer, "vendor1", 100, 10))
    vendor = harness.vendors["vendor1"]
    durable = vendor.loop.persist
    never = asyncio.Event()

    async def dies_after_commit(events: list[VendorEvent]) -> None:
        await durable(events)  # the record is on disk ...
        if any(isinstance(e, ScripAccepted) for e in events):
            await never.wait()  # ... and the process dies before the reply leaves

    vendor.loop.persist = dies_after_commit
    wallet = await harness.buyer("buyer1")
    with pytest.raises(BuyerError, match="did not answer the scrip payment"):
        await wallet.run(lambda: pay_with_scrip(wallet, "vendor1", 1, 30, timeout=3))
    run = harness.tasks.pop()
    run.cancel()  # the vendor process is gone
    await asyncio.gather(run, return_exceptions=True)
    store = tmp_path / "vendor1" / "store.db"
    assert rows(store, "SELECT serial, generation, price FROM spent_scrip") == [(1, 0, 30)]
    wallet_file = tmp_path / "buyer1" / "wallet.db"
    assert rows(wallet_file, "SELECT serial, price FROM scrip_pending") == [(1, 30)]

    again = await reopen_vendor(harness)
    assert again.core.spent_scrip[1].generation == 0
    # The wallet, started again, resends the payment it wrote: the vendor repeats its answer.
    resumed = await harness.buyer("buyer1")
    assert 1 in resumed.core.scrip_pending

    async def settled() -> None:
        await wait_until(lambda: not resumed.core.scrip_pending)

    await resumed.run(settled)
    assert again.counters.scrip_payments == 0  # a repeat: nothing accepted twice
    assert rows(wallet_file, "SELECT serial, generation, value FROM scrip") == [(1, 1, 70)]
    assert rows(wallet_file, "SELECT COUNT(*) FROM scrip_pending") == [(0,)]
    await harness.stop()


@pytest.mark.asyncio
async def test_wallet_scrip_and_secrets_are_sealed_at_rest(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    buyer = await start(harness)
    bought = await buyer.run(lambda: mint(buyer, "vendor1", 250, 10))
    await harness.stop()
    directory = tmp_path / "buyer1"
    on_disk = b"".join(p.read_bytes() for p in directory.glob("wallet.db*"))
    assert bought.secret not in on_disk
    assert bought.scrip not in on_disk
    ((sealed_secret,),) = rows(directory / "wallet.db", "SELECT sealed FROM scrip_secrets")
    assert isinstance(sealed_secret, bytes)
    assert len(sealed_secret) == 1 + 12 + 32 + 16
    assert rows(directory / "wallet.db", "SELECT vendor, value FROM scrip") == [("vendor1", 250)]

    reopened = await harness.buyer("buyer1")  # with its keys: unsealed as it opens
    try:
        (held,) = reopened.core.scrip.values()
        assert held.tagged == bought.scrip
        assert reopened.core.scrip_secrets[("vendor1", bought.ref)] == bought.secret
    finally:
        await reopened.store.close()
