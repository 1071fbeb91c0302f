"""Replays: paywords, commitments, redemptions, whole envelopes, across restarts and topics."""

from __future__ import annotations

import asyncio
import time

import pytest

from protocol import topics
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
async def test_replayed_payword_is_not_paid_twice(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        cid, sent = await pay_through(buyer, vendor1, 5, 5)
        first_payment = sent[1]
        # The same bytes again, and the same payword in a freshly sealed envelope.
        await buyer.publish(first_payment.topic, first_payment.payload)
        channel = core.channels[cid]
        stale = Payment(cid, 5, channel.chain.word(5))
        core.send("vendor1", stale, time.time(), auth=Auth.CHAIN, key=channel.key, ref=cid)
        await buyer.flush()
        await wait_until(lambda: vendor1.loop.rejected == 2)
    assert vendor1.loop.rejections == {"replay": 1, "payment": 1}
    assert vendor1.counters.amount == 10
    await harness.redeem("vendor1")
    assert harness.credited("vendor1") == harness.debited("buyer1") == 10
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_replayed_commitment_does_not_reset_the_chain(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        cid, (commit, _) = await pay_through(buyer, vendor1, 10)
        channel = core.channels[cid]
        # Byte-for-byte replay of the commit, then a freshly sealed one: neither restarts
        # the chain at 0, so the paywords 1..10 cannot be spent again.
        await buyer.publish(commit.topic, commit.payload)
        core.send(
            "vendor1", Commit(channel.commitment), time.time(), auth=Auth.CHAIN,
            key=channel.key, ref=cid,
        )  # fmt: skip
        core.send(
            "vendor1", Payment(cid, 3, channel.chain.word(3)), time.time(), auth=Auth.CHAIN,
            key=channel.key, ref=cid,
        )  # fmt: skip
        await buyer.flush()
        await wait_until(lambda: vendor1.loop.rejected == 2)
    assert vendor1.loop.rejections == {"replay": 1, "payment": 1}
    assert vendor1.core.chains[cid].index == 10
    assert vendor1.counters.amount == 10
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_redemption_replayed_after_a_broker_restart_is_credited_once(
    harness: AttackHarness,
) -> None:
    await harness.start_vendor("vendor1")
    cid = await paid(harness, 10)
    greedy = (await halt_vendor(harness, "vendor1")).core
    state = greedy.chains[cid]
    queue_redeem(greedy, state.verified.signed, state.index, state.word)
    async with rogue(harness.mosquitto, "vendor1", greedy) as attacker:
        (envelope,) = attacker.take()
        await attacker.publish(envelope.topic, envelope.payload)
        await wait_until(lambda: harness.credited("vendor1") == 10)
        # A restarted broker has an empty replay window: the same bytes pass the envelope
        # checks, and the ledger-backed chain state makes the redemption a no-op.
        await harness.stop_broker()
        broker = await harness.start_broker()
        await attacker.publish(envelope.topic, envelope.payload)
        await attacker.publish(envelope.topic, envelope.payload)
        await wait_until(lambda: broker.loop.received >= 2)
        await wait_until(lambda: broker.loop.rejections["replay"] == 1)
    assert harness.credited("vendor1") == harness.debited("buyer1") == 10
    assert broker.service.core.chains[cid].index == 10
    await harness.broker_serving("vendor2")


@pytest.mark.asyncio
async def test_payment_replayed_after_a_vendor_restart_is_not_paid_twice(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        _, sent = await pay_through(buyer, vendor1, 4, 6)
        restarted = await harness.restart_vendor("vendor1")  # its replay window is gone
        for envelope in sent:
            await buyer.publish(envelope.topic, envelope.payload)
        await wait_until(lambda: restarted.loop.received >= 3)
        await asyncio.sleep(0.2)
    # The commit only re-acknowledges, payword 4 is below the stored index 10, and payword
    # 10 is the exact last one (re-acknowledged): nothing is accepted again.
    assert restarted.counters.amount == 0
    assert restarted.loop.rejections == {"payment": 1}
    await harness.redeem("vendor1")
    assert harness.credited("vendor1") == harness.debited("buyer1") == 10
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_message_moved_to_another_topic_or_recipient_is_refused(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    vendor2 = await harness.start_vendor("vendor2")
    core = await buyer_core(harness, "buyer1")
    broker = harness.daemon
    assert broker is not None
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1", "vendor2")
        cid = core.open_channel("vendor1", 100, time.time()).commitment_id
        core.pay(cid, 10, time.time())
        core.query_balance(time.time())
        commit, payment, balance = buyer.take()
        # buyer1 may publish into any inbox as itself; the MAC covers the topic and the
        # header names the recipient, so nothing verifies anywhere but where it was sent.
        for envelope in (commit, payment):
            await buyer.publish(topics.inbox("vendor2", "buyer1"), envelope.payload)
            await buyer.publish(topics.inbox("broker", "buyer1"), envelope.payload)
        await buyer.publish(topics.inbox("vendor1", "buyer1"), balance.payload)
        # A payment re-sealed under vendor1's chain key but addressed to vendor2.
        key = vendor_key(core, "vendor1", cid)
        core.send("vendor2", Payment(cid, 11, core.channels[cid].chain.word(11)), time.time(),
                  auth=Auth.CHAIN, key=key, ref=cid)  # fmt: skip
        await buyer.flush()
        await wait_until(lambda: vendor2.loop.rejected == 3)
        await wait_until(lambda: broker.loop.rejected == 2 and vendor1.loop.rejected == 1)
        for envelope in (commit, payment):  # where they belong, they still work
            await buyer.publish(envelope.topic, envelope.payload)
        await wait_until(lambda: vendor1.counters.amount == 10)
    assert set(vendor2.loop.rejections) == {"auth"}
    assert set(broker.loop.rejections) <= {"auth", "malformed"}
    assert vendor2.counters.amount == 0
    await harness.serving("vendor2")
    await harness.redeem("vendor1")
    assert harness.credited("vendor1") == harness.debited("buyer1") == 10


@pytest.mark.asyncio
async def test_stale_and_future_dated_envelopes_are_refused(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        cid, _ = await pay_through(buyer, vendor1, 2)
        channel = core.channels[cid]
        for skew in (-600.0, +600.0):
            payment = Payment(cid, 3, channel.chain.word(3))
            core.send(
                "vendor1", payment, time.time() + skew, auth=Auth.CHAIN, key=channel.key, ref=cid
            )
        await buyer.flush()
        await wait_until(lambda: vendor1.loop.rejected == 2)
    assert vendor1.loop.rejections == {"stale": 2}
    assert vendor1.counters.amount == 2
    await harness.serving("vendor1")
