"""The vendor daemon's side of the scrip review (tests/attacks/test_scrip_review_vendor.py).

Over a real Mosquitto with the broker daemon: a vendor restarted after a crash deposits
what it recorded and had not had confirmed, even when told to stop before it connected;
and a deposit the broker refused for good is kept in the store, shown by `vendor status`,
and not deposited again after a restart; a restarted vendor asks about its confirmed
records too, and the broker answers without recording anything.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agents.cli.status_commands import vendor_table
from agents.daemons.buyer_scrip import mint, pay_with_scrip
from agents.daemons.scrip_rows import vendor_statements
from agents.daemons.store_status import read_vendor_status
from agents.daemons.vendor_agent import VendorAgent
from protocol.events import ScripDepositRefused
from protocol.messages import OfferItem
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker
from tests.agents.harness import Harness, wait_until

# Deposits only when the daemon stops (or restarts): one hour between rounds.
TERMS = VendorTerms(
    items=(OfferItem("article", 30),), scrip=True, redeem_interval=3600, redeem_retry=60
)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


async def reopened(harness: Harness) -> VendorAgent:
    """The vendor started again on its data directory; not waited for to connect."""
    assert harness.info is not None
    again = await VendorAgent.open(
        harness.root / "vendor1", "vendor1", harness.info, TERMS, harness.mosquitto.user("vendor1")
    )
    harness.tasks.append(asyncio.create_task(again.run()))
    harness.vendors["vendor1"] = again
    return again


async def crashed_with_a_record(harness: Harness) -> Path:
    """A payment taken and recorded; the vendor process dies before it deposits it."""
    await harness.start_broker()
    await harness.start_vendor("vendor1", TERMS)
    await harness.enroll_buyer("buyer1")
    buyer = await harness.buyer("buyer1")
    await buyer.run(lambda: mint(buyer, "vendor1", 100, 10))
    wallet = await harness.buyer("buyer1")
    result = await wallet.run(lambda: pay_with_scrip(wallet, "vendor1", 1, 30, timeout=10))
    assert result.paid == 30
    run = harness.tasks.pop()
    run.cancel()  # killed: no deposit at stop
    await asyncio.gather(run, return_exceptions=True)
    harness.vendors.pop("vendor1")  # its run closed the store as it ended
    store = harness.root / "vendor1" / "store.db"
    assert rows(store, "SELECT serial, generation, confirmed FROM spent_scrip") == [(1, 0, -1)]
    return store


@pytest.mark.asyncio
async def test_a_restarted_vendor_stopped_at_once_still_deposits_what_it_recorded(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    store = await crashed_with_a_record(harness)
    assert harness.daemon is not None
    record = harness.daemon.service.core.scrip.records[1]
    assert (record.generation, record.credited) == (None, 0)  # nothing deposited yet

    again = await reopened(harness)
    await again.shutdown(within=10)  # before it even connected: it waits, deposits, stops
    await asyncio.wait_for(harness.tasks.pop(), 20)
    harness.vendors.pop("vendor1")
    assert (record.generation, record.credited) == (0, 30)
    assert rows(store, "SELECT serial, generation, confirmed FROM spent_scrip") == [(1, 0, 0)]
    await harness.stop()


@pytest.mark.asyncio
async def test_a_restarted_vendor_deposits_at_once_not_after_its_retry_interval(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await crashed_with_a_record(harness)
    assert harness.daemon is not None
    broker = harness.daemon.service.core
    again = await reopened(harness)
    await wait_until(lambda: broker.scrip.records[1].generation == 0, 10)  # redeem_retry: 60
    await wait_until(lambda: again.core.scrip_awaiting_deposit == 0, 10)
    await harness.stop()


@pytest.mark.asyncio
async def test_a_refused_deposit_is_kept_shown_and_not_sent_again_after_a_restart(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    store = await crashed_with_a_record(harness)
    # What the daemon writes when the broker refuses this record's deposit for good.
    refusal = ScripDepositRefused(1, 0, "serial 1 was not minted for vendor1", 1_767_225_600_000)
    with sqlite3.connect(store) as db:
        for sql, params in vendor_statements(refusal):
            db.executemany(sql, params)

    status = read_vendor_status(store)
    assert (status.scrip_serials, status.scrip_awaiting_deposit) == (1, 0)
    (kept,) = status.scrip_refused
    assert (kept.serial, kept.generation, kept.buyer, kept.price) == (1, 0, "buyer1", 30)
    assert kept.reason == refusal.detail
    table = vendor_table(status)
    assert "REFUSED" in table
    assert "1 scrip deposit refused by the broker" in table

    assert harness.daemon is not None
    broker = harness.daemon.service.core
    again = await reopened(harness)
    await asyncio.wait_for(again.loop.connected.wait(), 10)
    record = again.core.spent_scrip[1]
    assert record.refused == refusal.detail
    assert again.core.scrip_awaiting_deposit == 0
    await asyncio.sleep(1)
    assert broker.scrip.records[1].generation is None  # never sent
    await harness.stop()
    assert rows(store, "SELECT serial, generation, reason FROM scrip_refused") == [
        (1, 0, refusal.detail)
    ]


@pytest.mark.asyncio
async def test_a_restarted_vendor_asks_about_confirmed_records_and_the_broker_records_nothing(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    store = await crashed_with_a_record(harness)
    assert harness.daemon is not None
    broker = harness.daemon.service.core
    again = await reopened(harness)
    await again.shutdown(within=10)  # deposited and confirmed: (1, 0, 0) in the store
    await asyncio.wait_for(harness.tasks.pop(), 20)
    harness.vendors.pop("vendor1")
    assert rows(store, "SELECT serial, generation, confirmed FROM spent_scrip") == [(1, 0, 0)]

    third = await reopened(harness)  # its store may be a backup: it asks all the same
    assert third.core.spent_scrip[1].reconfirming
    await wait_until(lambda: not third.core.spent_scrip[1].reconfirming, 10)
    assert third.core.scrip_awaiting_deposit == 0
    record = broker.scrip.records[1]
    assert (record.generation, record.credited, record.rejections) == (0, 30, 0)  # a repeat
    await harness.stop()
    assert rows(store, "SELECT serial, generation, confirmed FROM spent_scrip") == [(1, 0, 0)]
