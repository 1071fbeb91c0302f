"""PUBACK after commit, on a real Mosquitto and a real vendor: bounded memory, nothing lost.

The vendor's loop acknowledges a batch's messages only once the batch is durable. Two
consequences are tested here: a vendor whose disk is slow holds at most the Receive
Maximum it announced (Mosquitto keeps the rest), and a vendor that dies before its commit
gets the same payments again from Mosquitto, with no help from the buyer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.vendor_agent import VendorAgent
from agents.runtime.mqtt import open_link
from agents.runtime.mqtt5_link import Mqtt5Link
from agents.runtime.mqtt_link import RECEIVE_MAXIMUM
from protocol.events import VendorEvent
from tests.agents.conftest import Broker
from tests.agents.harness import Harness, wait_until

Persist = Callable[[list[VendorEvent]], Awaitable[None]]


async def open_channel(harness: Harness) -> BuyerAgent:
    """buyer1, enrolled, with a channel to vendor1 that has carried one payment."""
    await harness.enroll_buyer("buyer1")
    buyer = await harness.buyer("buyer1")
    await buyer.run(lambda: buyer.pay("vendor1", 1, 1, length=100_000))
    return buyer


def payments(buyer: BuyerAgent, count: int) -> list[tuple[str, bytes]]:
    """``count`` further one-unit payment envelopes on the buyer's channel, in order."""
    (channel,) = buyer.core.channels.values()
    out: list[tuple[str, bytes]] = []
    for _ in range(count):
        buyer.core.pay(channel.id, 1, time.time())
        out.extend((o.topic, o.payload) for o in buyer.core.data_to_send())
    return out


async def publish_all(mosquitto: Broker, envelopes: list[tuple[str, bytes]]) -> None:
    """Publish as buyer1, many in flight, and wait for Mosquitto to acknowledge all."""
    link = open_link(mosquitto.user("buyer1"))
    assert isinstance(link, Mqtt5Link)
    async with link:
        pending = []
        for topic, payload in envelopes:
            await link.room()
            pending.append(link.publish_nowait(topic, payload))
        await asyncio.gather(*pending)


def vendor_index(vendor: VendorAgent) -> int:
    (chain,) = vendor.core.chains.values()
    return chain.index


@pytest.mark.asyncio
async def test_a_vendor_on_a_slow_disk_holds_at_most_its_receive_maximum(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await harness.start_broker()
    vendor = await harness.start_vendor("vendor1")
    buyer = await open_channel(harness)
    link = vendor.loop.link
    assert isinstance(link, Mqtt5Link)

    fast: Persist = vendor.loop.persist

    async def slow_disk(events: list[VendorEvent]) -> None:
        await asyncio.sleep(0.05)  # every commit waits on the disk
        await fast(events)

    vendor.loop.persist = slow_disk
    envelopes = payments(buyer, 8 * RECEIVE_MAXIMUM)
    count = len(envelopes)
    held: list[int] = []

    async def sample() -> None:
        while True:
            held.append(link.unacknowledged)
            await asyncio.sleep(0.002)

    sampler = asyncio.create_task(sample())
    try:
        await publish_all(mosquitto, envelopes)
        await wait_until(lambda: vendor_index(vendor) == count + 1, timeout=60)
    finally:
        sampler.cancel()
    # Mosquitto, not the vendor, held the backlog: past its Receive Maximum the vendor's
    # client leaves messages unparsed and stops reading its socket until the committer
    # acknowledges, however long the backlog runs.
    assert max(held) <= RECEIVE_MAXIMUM
    assert max(held) >= RECEIVE_MAXIMUM // 2  # the disk, not the load, was the bottleneck
    vendor.loop.persist = fast
    await harness.stop()
    assert vendor.counters.payments == count + 1


@pytest.mark.asyncio
async def test_payments_read_but_not_yet_durable_come_back_from_mosquitto(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await harness.start_broker()
    vendor = await harness.start_vendor("vendor1")
    buyer = await open_channel(harness)
    run = harness.tasks[-1]

    never = asyncio.Event()

    async def stuck_disk(_events: list[VendorEvent]) -> None:
        await never.wait()  # the commit never completes: the process dies first

    vendor.loop.persist = stuck_disk
    count = 50
    await publish_all(mosquitto, payments(buyer, count))
    await wait_until(lambda: vendor.loop.received >= count)
    assert vendor_index(vendor) == count + 1  # in the core's memory only
    run.cancel()  # the vendor process is gone before anything was committed
    await asyncio.gather(run, return_exceptions=True)
    harness.tasks.remove(run)
    del harness.vendors["vendor1"]

    # A new vendor process on the same data directory: its store knows only payment 1;
    # the buyer is not running, so only Mosquitto can bring the other 50 back.
    assert harness.info is not None
    again = await VendorAgent.open(
        tmp_path / "vendor1", "vendor1", harness.info, vendor.core.terms, mosquitto.user("vendor1")
    )
    assert vendor_index(again) == 1
    harness.tasks.append(asyncio.create_task(again.run()))
    harness.vendors["vendor1"] = again
    await wait_until(lambda: vendor_index(again) == count + 1, timeout=20)
    await harness.stop()
    assert again.counters.payments == count
