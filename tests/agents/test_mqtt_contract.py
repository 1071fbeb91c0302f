"""What the MqttLink seam guarantees, run against both clients on a real Mosquitto.

Delivery: the round trip, order, sessions that outlive a connection, PUBACK only after
the caller acknowledges, Receive Maximum as back pressure, refused logins and oversize
packets. Faults of the network (TLS, a dead peer, a publish in flight when the line
drops) are in ``test_mqtt_contract_faults``.

Where the clients differ, the difference is asserted, not skipped: aiomqtt 2.x
acknowledges a QoS 1 message as soon as it arrives (empicano/aiomqtt#345), so with it
unacknowledged messages are not redelivered and Receive Maximum does not bound memory.
"""

from __future__ import annotations

import asyncio
from typing import Final, Literal

import pytest

from agents.ops.mosquitto import free_port
from agents.runtime.mqtt import (
    CLIENTS,
    ClientName,
    LinkError,
    MqttRefusedError,
    PacketTooLargeError,
    open_link,
)
from agents.runtime.mqtt_link import MAX_PACKET_SIZE, RECEIVE_MAXIMUM
from protocol import topics
from tests.agents.conftest import Broker, Endpoint
from tests.agents.harness import wait_until
from tests.agents.link_helpers import (
    FILTER,
    INBOX,
    SELF,
    SENTINEL,
    WAIT,
    barrier,
    dropped,
    numbered,
    payloads_until_sentinel,
    reading,
    settings,
    take,
)
from tests.agents.tcp_proxy import Proxy

pytestmark = [pytest.mark.asyncio, pytest.mark.parametrize("client", CLIENTS)]

ACKNOWLEDGES_ON_RECEIPT: Final[dict[ClientName, bool]] = {"mqtt5": False, "aiomqtt": True}
"""Whether the client PUBACKs a message before the caller acknowledges it (aiomqtt#345)."""

Drop = Literal["leave", "cut"]  # leave the context (DISCONNECT) or reset the TCP connection


async def test_many_messages_arrive_complete_and_in_order(
    mosquitto: Broker, client: ClientName
) -> None:
    sent = numbered(5_000)
    async with (
        open_link(settings(mosquitto, "vendor1", client)) as vendor,
        open_link(settings(mosquitto, "buyer1", client)) as buyer,
        reading(vendor) as stream,
    ):
        await vendor.subscribe([FILTER])
        receiving = asyncio.create_task(take(stream, len(sent), within=30))
        for payload in sent:
            await buyer.publish(INBOX, payload)
        received = await receiving
    assert received == [(INBOX, payload) for payload in sent]


@pytest.mark.parametrize("drop", ["leave", "cut"])
async def test_a_persistent_session_gets_what_was_queued_while_away(
    mosquitto: Broker, client: ClientName, drop: Drop
) -> None:
    sent = numbered(500)
    async with Proxy(mosquitto.port) as proxy:
        vendor = open_link(settings(mosquitto, "vendor1", client, port=proxy.port))
        async with vendor:
            await vendor.subscribe([FILTER])
            if drop == "cut":
                proxy.cut()
                await dropped(vendor)
        async with open_link(settings(mosquitto, "buyer1", client)) as buyer:
            for payload in [*sent, SENTINEL]:
                await buyer.publish(INBOX, payload)
        async with vendor, reading(vendor) as stream:  # the same id, no subscribe
            assert await payloads_until_sentinel(stream) == sent


@pytest.mark.parametrize("drop", ["leave", "cut"])
async def test_unacknowledged_messages_are_delivered_again_after_a_reconnect(
    mosquitto: Broker, client: ClientName, drop: Drop
) -> None:
    # The agents' loop reads with acknowledge=False and acknowledges a batch once it is
    # durable: a crash in between must leave the batch with Mosquitto, not lost.
    sent = numbered(10)
    async with (
        Proxy(mosquitto.port) as proxy,
        open_link(settings(mosquitto, "buyer1", client)) as buyer,
    ):
        vendor = open_link(settings(mosquitto, "vendor1", client, port=proxy.port))
        async with vendor, reading(vendor, acknowledge=False) as stream:
            await vendor.subscribe([FILTER])
            for payload in sent:
                await buyer.publish(INBOX, payload)
            committed = await take(stream, 4)
            token = vendor.delivered()
            assert [payload for _topic, payload in committed] == sent[:4]
            assert [payload for _topic, payload in await take(stream, 6)] == sent[4:]
            vendor.acknowledge(token)  # the first four only; the last six never
            await barrier(vendor)  # Mosquitto has the four PUBACKs
            if drop == "cut":
                proxy.cut()
                with pytest.raises(LinkError):
                    await take(stream, 1)
        await buyer.publish(INBOX, SENTINEL)
        async with vendor, reading(vendor) as stream:
            again = await payloads_until_sentinel(stream)
    if ACKNOWLEDGES_ON_RECEIPT[client]:
        assert again == []  # the documented limit: aiomqtt acknowledged all ten on receipt
    else:
        assert again == sent[4:]  # not the four acknowledged ones


async def test_receive_maximum_holds_unacknowledged_messages_at_mosquitto(
    mosquitto: Broker, client: ClientName
) -> None:
    sent = numbered(3 * RECEIVE_MAXIMUM)
    async with (
        open_link(settings(mosquitto, "vendor1", client)) as vendor,
        reading(vendor, acknowledge=False) as stream,
    ):
        await vendor.subscribe([FILTER])
        async with open_link(settings(mosquitto, "buyer1", client)) as buyer:
            for payload in sent:
                await buyer.publish(INBOX, payload)
        if ACKNOWLEDGES_ON_RECEIPT[client]:
            # The documented limit: nothing holds the flow back, all of it is in memory.
            await wait_until(lambda: vendor.pending() >= len(sent))
            assert vendor.pending() == len(sent) > RECEIVE_MAXIMUM
            received = await take(stream, len(sent))
        else:
            await barrier(vendor)  # all Mosquitto would send has arrived
            assert vendor.pending() == RECEIVE_MAXIMUM
            received = await take(stream, RECEIVE_MAXIMUM)
            await barrier(vendor)
            assert vendor.pending() == 0  # read, not acknowledged: Mosquitto holds the rest
            # Once acknowledgements flow, Mosquitto 2.0 sends past our window (a PUBACK of
            # the oldest message releases up to a window more): the link holds the line.
            held = RECEIVE_MAXIMUM
            async with asyncio.timeout(WAIT):
                while len(received) < len(sent):
                    if vendor.pending() == 0:  # as the agents' loop does after a commit
                        vendor.acknowledge(vendor.delivered())
                        held = 0
                    received.append(await anext(stream))
                    held += 1
                    assert held + vendor.pending() <= RECEIVE_MAXIMUM
    assert received == [(INBOX, payload) for payload in sent]


async def test_a_wrong_password_is_refused_not_retried(
    mosquitto: Broker, client: ClientName
) -> None:
    wrong = settings(mosquitto, "vendor1", client, password="pw-wrong")  # noqa: S106
    with pytest.raises(MqttRefusedError) as refused:
        async with asyncio.timeout(WAIT), open_link(wrong):
            pytest.fail("connected with a wrong password")
    assert not isinstance(refused.value, LinkError)  # the loop retries only LinkError
    assert "vendor1" in str(refused.value)


async def test_nobody_listening_is_a_link_error_at_once(
    mosquitto: Broker, client: ClientName
) -> None:
    nowhere = settings(mosquitto, "vendor1", client, port=free_port())
    with pytest.raises(LinkError):
        async with asyncio.timeout(1.0), open_link(nowhere):
            pytest.fail("connected to a port nobody listens on")


async def test_an_oversize_publish_is_refused_before_sending_and_the_link_goes_on(
    mosquitto: Broker, client: ClientName
) -> None:
    # The reader is a raw client without a packet size limit: had a refused message been
    # sent, Mosquitto (128 KiB limit) would have passed the smaller one on to it, and cut
    # the link off for the larger one.
    largest = MAX_PACKET_SIZE - len(INBOX) - 16  # the largest payload a link agrees to send
    own = topics.inbox("buyer1", "buyer1")
    async with (
        Endpoint(mosquitto.port).client("vendor1") as reader,
        open_link(settings(mosquitto, "buyer1", client)) as buyer,
        reading(buyer) as stream,
    ):
        await reader.subscribe(FILTER, qos=1)
        await buyer.subscribe([topics.inbox_filter("buyer1")])
        for oversize in (2 * MAX_PACKET_SIZE, largest + 1):
            with pytest.raises(PacketTooLargeError) as refused:
                await buyer.publish(INBOX, bytes(oversize))
            assert isinstance(refused.value, LinkError)
        await buyer.publish(INBOX, b"x" * largest)
        await buyer.publish(INBOX, SENTINEL)
        received: list[bytes] = []
        async with asyncio.timeout(WAIT):
            async for message in reader.messages:
                assert isinstance(message.payload, bytes)
                received.append(message.payload)
                if message.payload == SENTINEL:
                    break
        assert received == [b"x" * largest, SENTINEL]
        await buyer.publish(own, b"still connected")
        assert await take(stream, 1) == [(own, b"still connected")]


async def test_a_message_over_our_maximum_packet_size_is_not_delivered_to_us(
    mosquitto: Broker, client: ClientName
) -> None:
    # Mosquitto accepts packets up to 128 KiB (max_packet_size); we announce less in
    # CONNECT, so MQTT 5 has Mosquitto drop a larger one for us instead of sending it.
    oversize = bytes(MAX_PACKET_SIZE + 10_000)
    async with (
        open_link(settings(mosquitto, "vendor1", client)) as vendor,
        reading(vendor) as stream,
    ):
        await vendor.subscribe([FILTER])
        async with Endpoint(mosquitto.port).client("buyer1", identifier="buyer1") as buyer:
            await buyer.publish(INBOX, oversize, qos=1)
            await buyer.publish(INBOX, b"small", qos=1)
            await buyer.publish(INBOX, SENTINEL, qos=1)
        assert await payloads_until_sentinel(stream) == [b"small"]
        await vendor.publish(SELF, b"still connected")
        assert await take(stream, 1) == [(SELF, b"still connected")]
