"""Network attacks with a raw MQTT client: the ACL, forged and replayed messages."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import pytest

from protocol import topics
from tests.agents.conftest import Broker
from tests.agents.harness import Harness, wait_until


async def raw_publish(mosquitto: Broker, user: str, topic: str, payload: bytes) -> None:
    settings = mosquitto.user(user)
    async with aiomqtt.Client(
        "127.0.0.1",
        mosquitto.port,
        username=settings.username,
        password=settings.password,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=2,
    ) as client:
        await client.publish(topic, payload, qos=1)


@pytest.mark.asyncio
async def test_acl_stops_publishing_into_another_clients_inbox_as_someone_else(
    tmp_path: Path, mosquitto: Broker
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await harness.start_broker(witness_interval=3600)  # no broadcast during the count
    vendor = await harness.start_vendor("vendor1")
    before = vendor.loop.received
    # mallory writes to vendor1's inbox pretending to be buyer1: Mosquitto refuses it.
    await raw_publish(mosquitto, "mallory", topics.inbox("vendor1", "buyer1"), b"\x02" + b"x" * 80)
    # and cannot publish a fake broker identity either
    await raw_publish(mosquitto, "mallory", topics.public("broker", "revocations"), b"x" * 80)
    await asyncio.sleep(0.5)
    assert vendor.loop.received == before
    assert vendor.loop.rejected == 0
    await harness.stop()


@pytest.mark.asyncio
async def test_forged_and_replayed_messages_are_rejected_and_the_vendor_keeps_serving(
    tmp_path: Path, mosquitto: Broker
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await harness.start_broker()
    vendor = await harness.start_vendor("vendor1")
    await harness.enroll_buyer("buyer1")
    buyer = await harness.buyer("buyer1")
    first = await buyer.run(lambda: buyer.pay("vendor1", 20, 3))
    assert first.acknowledged == 60

    inbox = topics.inbox("vendor1", "mallory")
    await raw_publish(mosquitto, "mallory", inbox, b"\x00garbage")  # malformed
    await raw_publish(mosquitto, "mallory", inbox, b"\x02" + bytes(200))  # bad MAC
    with pytest.raises(aiomqtt.MqttError):  # Mosquitto drops a client that sends > 128 KiB
        await raw_publish(mosquitto, "mallory", inbox, b"\x02" + b"\xc1" * 2_000_000)
    await wait_until(lambda: vendor.loop.rejected >= 2)

    # A replay: buyer1 resends bytes the vendor already accepted (buyer1 may publish there).
    channel = next(iter(buyer.core.channels.values()))
    buyer.core.pay(channel.id, 1, time.time())
    (payment,) = buyer.core.data_to_send()
    await raw_publish(mosquitto, "buyer1", payment.topic, payment.payload)
    await wait_until(lambda: vendor.counters.amount == 61)
    rejected = vendor.loop.rejected
    await raw_publish(mosquitto, "buyer1", payment.topic, payment.payload)
    await wait_until(lambda: vendor.loop.rejected == rejected + 1)
    assert vendor.counters.amount == 61

    # The wallet never recorded that hand-made payment (index 61). The next session sends
    # its commit again first: the vendor's receipt says 61, so the wallet goes on from there
    # and its 20 units are paid on top, each once.
    buyer = await harness.buyer("buyer1")
    second = await buyer.run(lambda: buyer.pay("vendor1", 10, 2))
    assert second.acknowledged == 81
    assert vendor.counters.amount == 81
    await harness.stop()
    assert harness.daemon is not None
    assert harness.daemon.service.core.totals.credited["vendor1"] == 81
