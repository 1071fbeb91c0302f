"""Double spending: one chain at two vendors, one commitment redeemed twice or by another."""

from __future__ import annotations

import asyncio
import time

import pytest

from protocol.envelope import Auth
from protocol.messages import Commit, Payment
from tests.agents.harness import wait_until
from tests.attacks.rogue import (
    AttackHarness,
    buyer_core,
    halt_vendor,
    offered,
    paid,
    pay_through,
    queue_redeem,
    rogue,
    vendor_key,
)


@pytest.mark.asyncio
async def test_one_chain_shown_to_two_vendors_is_paid_once(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    vendor2 = await harness.start_vendor("vendor2")
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor2")
        cid, _ = await pay_through(buyer, vendor1, 10)
        now = time.time()

        # The same commitment and paywords shown to vendor2, under a MAC vendor2 can check.
        channel = core.channels[cid]
        key = vendor_key(core, "vendor2", cid)
        core.send("vendor2", Commit(channel.commitment), now, auth=Auth.CHAIN, key=key, ref=cid)
        for index in (10, 11):
            payment = Payment(cid, index, channel.chain.word(index))
            core.send("vendor2", payment, now, auth=Auth.CHAIN, key=key, ref=cid)
        await buyer.flush()
        await wait_until(lambda: vendor2.loop.rejected == 3)
    assert vendor2.loop.rejections == {"commitment": 1, "auth": 2}
    assert vendor2.counters.amount == 0
    await harness.serving("vendor2")
    await harness.redeem("vendor1")
    await harness.redeem("vendor2")
    assert harness.credited("vendor1") == 10
    assert harness.credited("vendor2") == 2  # the honest buyer's payment only
    assert harness.debited("buyer1") == 10


@pytest.mark.asyncio
async def test_commitment_redeemed_by_another_vendor_is_refused(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    await harness.start_vendor("vendor2")
    cid = await paid(harness, 10)

    # vendor2 learned vendor1's commitment and last payword and redeems them as its own.
    rogue_vendor = (await halt_vendor(harness, "vendor2")).core
    state = vendor1.core.chains[cid]
    broker = harness.daemon
    assert broker is not None
    before = broker.loop.rejections["redemption"]
    queue_redeem(rogue_vendor, state.verified.signed, state.index, state.word)
    async with rogue(harness.mosquitto, "vendor2", rogue_vendor) as attacker:
        await attacker.flush()
        await wait_until(lambda: broker.loop.rejections["redemption"] == before + 1)
    assert harness.credited("vendor2") == 0
    await harness.redeem("vendor1")
    assert harness.credited("vendor1") == 10
    assert harness.debited("buyer1") == 10
    await harness.broker_serving("vendor1")


@pytest.mark.asyncio
async def test_same_redemption_replayed_and_sent_concurrently_is_credited_once(
    harness: AttackHarness,
) -> None:
    await harness.start_vendor("vendor1")
    cid = await paid(harness, 10)

    # vendor1 turns greedy: 40 fresh redemption envelopes of the same payword, sent at
    # once, and the first of them replayed byte for byte 10 more times.
    greedy = (await halt_vendor(harness, "vendor1")).core
    state = greedy.chains[cid]
    for _ in range(40):
        queue_redeem(greedy, state.verified.signed, state.index, state.word)
    broker = harness.daemon
    assert broker is not None
    async with rogue(harness.mosquitto, "vendor1", greedy) as attacker:
        envelopes = attacker.take()
        replays = [envelopes[0]] * 10
        received = broker.loop.received
        await asyncio.gather(*(attacker.publish(m.topic, m.payload) for m in envelopes + replays))
        await wait_until(lambda: broker.loop.received >= received + 50)
    assert broker.loop.rejections["replay"] == 10
    assert harness.credited("vendor1") == 10
    assert harness.debited("buyer1") == 10
    assert broker.service.core.chains[cid].index == 10
    await harness.broker_serving("vendor2")
