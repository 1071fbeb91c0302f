"""Tampered envelopes, and denial of service: floods, oversized and nested input, huge jumps."""

from __future__ import annotations

import os
import time

import aiomqtt
import pytest

from protocol import topics
from protocol.crypto import Identity, MacKey
from protocol.endpoint import Endpoint
from protocol.envelope import Auth
from protocol.messages import Payment
from tests.agents.harness import wait_until
from tests.attacks.rogue import (
    AttackHarness,
    buyer_core,
    commit_as,
    offered,
    pay_through,
    rogue,
)
from tests.support.forgery import certificate, commitment, ms, seal_raw


@pytest.mark.asyncio
async def test_tampered_envelope_fails_its_mac(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1")
        cid = core.open_channel("vendor1", 100, time.time()).commitment_id
        await buyer.flush()
        core.pay(cid, 7, time.time())
        (payment,) = buyer.take()
        raw = payment.payload
        # A man in the middle flips one bit in the header, in the body, in the MAC, and
        # cuts the message short: every copy is refused and none is paid.
        positions = (5, len(raw) - 40, len(raw) - 1)
        for position in positions:
            flipped = bytearray(raw)
            flipped[position] ^= 0x01
            await buyer.publish(payment.topic, bytes(flipped))
        await buyer.publish(payment.topic, raw[:-1])
        await wait_until(lambda: vendor1.loop.rejected == 4)
        await buyer.publish(payment.topic, raw)  # the original still goes through
        await wait_until(lambda: vendor1.counters.amount == 7)
    assert set(vendor1.loop.rejections) <= {"auth", "malformed"}
    assert vendor1.counters.amount == 7
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_bad_mac_flood_is_dropped_and_the_vendor_keeps_serving(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1")
    flood = 2_000
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        cid, _ = await pay_through(buyer, vendor1, 3)
        guard_streams = len(vendor1.core.replay_guard)
        wrong_key = MacKey(os.urandom(32))
        mallory: Endpoint[object] = Endpoint("mallory", Identity.generate())
        async with rogue(harness.mosquitto, "mallory") as attacker:
            started = time.perf_counter()
            for index in range(flood):
                # on buyer1's real chain, under a wrong key...
                word = core.channels[cid].chain.word(4)
                core.send("vendor1", Payment(cid, 4, word), time.time(), auth=Auth.CHAIN,
                          key=wrong_key, ref=cid)  # fmt: skip
                # ...and from mallory, naming chains that do not exist
                nowhere = Payment(os.urandom(32), index + 1, bytes(32))
                mallory.send("vendor1", nowhere, time.time(), auth=Auth.CHAIN, key=wrong_key,
                             ref=os.urandom(32))  # fmt: skip
            for message in buyer.take():
                await buyer.publish(message.topic, message.payload)
            for message in mallory.data_to_send():
                await attacker.publish(message.topic, message.payload)
            await wait_until(lambda: vendor1.loop.rejected == 2 * flood, timeout=60)
            elapsed = time.perf_counter() - started
    print(f"{2 * flood} forged messages dropped in {elapsed:.2f} s")  # noqa: T201
    assert vendor1.loop.rejections == {"auth": 2 * flood}
    assert len(vendor1.core.replay_guard) == guard_streams  # nothing unauthenticated is kept
    assert vendor1.counters.amount == 3
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_oversized_and_deeply_nested_messages_are_refused(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1")
        cid = core.open_channel("vendor1", 100, time.time()).commitment_id
        await buyer.flush()
        key = core.channels[cid].key
        topic = topics.inbox("vendor1", "buyer1")
        # Correct MACs (the buyer holds the key) around hostile bodies: 50,000 nested arrays,
        # a map of a million entries announced in 5 bytes, a 100 KB blob.
        hostile = [
            b"\x91" * 50_000 + b"\xc0",
            b"\xdf\x00\x0f\x42\x40",
            b"\xc6\x00\x01\x86\xa0" + bytes(100_000),
        ]
        for body in hostile:
            envelope = seal_raw(topic, "payment", body, sender="buyer1", recipient="vendor1",
                                key=key, now=time.time(), ref=cid)  # fmt: skip
            await buyer.publish(topic, envelope)
        await wait_until(lambda: vendor1.loop.rejected == 2)
    # The 100 KB blob never reaches the vendor: its client announces a Maximum Packet Size
    # of 64 KiB + 1 KiB, and Mosquitto drops larger messages for it (MQTT 5). The vendor's
    # own size check (too-large) stands behind that for a client that announces none.
    # Above Mosquitto's max_packet_size the attacker's connection is cut before the vendor
    # reads anything.
    with pytest.raises(aiomqtt.MqttError):
        async with rogue(harness.mosquitto, "mallory") as attacker:
            await attacker.publish(topics.inbox("vendor1", "mallory"), bytes(2_000_000))
    await harness.serving("vendor1")
    assert vendor1.loop.rejections == {"malformed": 2}


@pytest.mark.asyncio
async def test_huge_payword_jump_is_refused_before_hashing(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1")
        cid = core.open_channel("vendor1", 100_000, time.time()).commitment_id
        core.pay(cid, 1, time.time())
        channel = core.channels[cid]
        # Index 100,000 would make the vendor hash 99,999 times; the jump cap (1,000 by
        # default) refuses it first.
        core.send("vendor1", Payment(cid, 100_000, bytes(32)), time.time(), auth=Auth.CHAIN,
                  key=channel.key, ref=cid)  # fmt: skip
        await buyer.flush()
        await wait_until(lambda: vendor1.loop.rejected == 1)
    assert vendor1.loop.rejections == {"payment": 1}
    assert vendor1.counters.amount == 1
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_flood_of_commitments_with_bad_signatures_is_throttled(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    budget = vendor1.core.terms.commit_failure_budget
    mallory = Identity.generate()
    fake_broker = Identity.generate()
    now = time.time()
    forged = certificate(fake_broker, mallory, "mallory", ms(now - 60), ms(now + 3600))
    agree = vendor1.core.identity.agree_key
    sender: Endpoint[object] = Endpoint("mallory", mallory)
    async with rogue(harness.mosquitto, "mallory") as attacker:
        for offset in range(budget + 20):
            # every commitment is new bytes, so no verification result can be cached
            body = commitment("vendor1", forged, ms(now), ms(now + 600 + offset))
            await commit_as(attacker, mallory, sender, agree, body, now)
        await wait_until(lambda: vendor1.loop.rejected == 2 * (budget + 20))
    # Each commit costs Ed25519 work until the sender's budget is spent; then it is
    # refused before any signature check (its payments fail as unknown chains).
    assert vendor1.loop.rejections == {
        "certificate": budget,
        "throttled": 20,
        "auth": budget + 20,
    }
    assert vendor1.counters.amount == 0
    await harness.serving("vendor1")  # another sender is not throttled
