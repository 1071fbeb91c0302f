"""``Mqtt5Link`` against a hostile or broken server: what Mosquitto itself never sends.

Whatever the server does, the link must end in ``LinkError`` (the agent's loop reconnects
with backoff), never in another exception (which would end the agent), never hang, and
never keep resources of a connection it has left. The server is a scripted one over a
real socket (``hostile_server``); the link is the one the agents use.
"""

from __future__ import annotations

import asyncio
import gc
import logging

import mqtt5
import pytest

from agents.runtime import mqtt5_link
from agents.runtime.mqtt import LinkError, PacketTooLargeError
from agents.runtime.mqtt5_link import Mqtt5Link
from agents.runtime.mqtt_link import RECEIVE_MAXIMUM
from tests.agents.hostile_server import HostileServer, Peer
from tests.agents.link_helpers import WAIT, dropped, reading, take

pytestmark = pytest.mark.asyncio

QOS1 = mqtt5.QoS.AT_LEAST_ONCE
NOT_UTF8_TOPIC = b"\x30\x04\x00\x02\xff\xfe"  # a QoS 0 PUBLISH whose topic is not UTF-8
NOT_UTF8_REASON = b"\xe0\x07\x00\x04\x1f\x00\x02\xff\xfe"  # a DISCONNECT, reason string likewise


def publish(payload: bytes, packet_id: int) -> bytes:
    return mqtt5.PublishPacket("t", payload, qos=QOS1, packet_id=packet_id).write()


# mqtt5 0.8 panics (pyo3's PanicException) instead of raising ValueError on a string that
# is not UTF-8, and reports the UnicodeDecodeError behind it as "unraisable" on its way:
# that report is the codec's, out of our hands; what the link makes of the panic is ours.
CODEC_PANICS = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

HOSTILE = [
    pytest.param(NOT_UTF8_TOPIC, "malformed packet", id="topic not UTF-8", marks=CODEC_PANICS),
    pytest.param(NOT_UTF8_REASON, "malformed packet", id="reason not UTF-8", marks=CODEC_PANICS),
    pytest.param(b"\x00\x00", "malformed packet", id="packet type 0"),
    pytest.param(b"\x30\xff\xff\xff\xff\x01", "malformed packet", id="five-byte length"),
    pytest.param(
        mqtt5.PublishPacket("t", b"x", qos=mqtt5.QoS.EXACTLY_ONCE, packet_id=1).write(),
        "QoS 2",
        id="publish at QoS 2",
    ),
    pytest.param(
        mqtt5.DisconnectPacket(
            reason_code=mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER, reason_str="by another"
        ).write(),
        "session taken over (by another)",
        id="DISCONNECT with a reason",
    ),
    pytest.param(
        mqtt5.SubscribePacket(1, [mqtt5.TopicFilter("t")]).write(),
        "unexpected SubscribePacket",
        id="SUBSCRIBE from the server",
    ),
    # 256 MiB announced, then more than we ever accept: refused once past our maximum
    pytest.param(b"\x30\xff\xff\xff\x7f" + bytes(200_000), "larger than", id="larger than allowed"),
]


@pytest.mark.parametrize(("data", "reason"), HOSTILE)
async def test_hostile_input_ends_the_connection_with_a_link_error(
    data: bytes, reason: str
) -> None:
    async def script(peer: Peer) -> None:
        await peer.accept()
        peer.send(data)
        await peer.answer_pings()

    async with HostileServer(script) as server, Mqtt5Link(server.settings()) as link:
        error = await dropped(link)
    assert reason in str(error)
    # PacketTooLargeError means "this publish of ours is too large": the agent's loop drops
    # that one message; a connection the server broke is not that.
    assert not isinstance(error, PacketTooLargeError)


@CODEC_PANICS
async def test_a_malformed_packet_read_once_the_window_reopens_is_a_link_error() -> None:
    # The packet after our Receive Maximum stays unread until the committer acknowledges;
    # it is parsed then, inside ``acknowledge``: a codec failure must not escape into the
    # committer (it would end the agent), it ends the connection.
    window = [publish(b"%d" % i, i + 1) for i in range(RECEIVE_MAXIMUM)]
    beyond = publish(b"beyond", RECEIVE_MAXIMUM + 1)

    async def script(peer: Peer) -> None:
        await peer.accept()
        peer.send(*window, beyond, NOT_UTF8_TOPIC)
        await peer.answer_pings()

    async with (
        HostileServer(script) as server,
        Mqtt5Link(server.settings()) as link,
        reading(link, acknowledge=False) as stream,
    ):
        assert len(await take(stream, RECEIVE_MAXIMUM)) == RECEIVE_MAXIMUM
        link.acknowledge(link.delivered())
        assert await take(stream, 1) == [("t", b"beyond")]
        with pytest.raises(LinkError, match="malformed packet"):
            await take(stream, 1)


async def test_stray_answers_are_ignored_and_the_link_goes_on() -> None:
    # A second CONNACK, a PUBACK and a SUBACK for ids never used: nothing to act on.
    async def script(peer: Peer) -> None:
        await peer.accept()
        peer.send(
            mqtt5.ConnAckPacket().write(),
            mqtt5.PubAckPacket(77).write(),
            mqtt5.SubAckPacket(99, [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE]).write(),
            publish(b"after", 1),
        )
        ours = await peer.packet()
        while not isinstance(ours, mqtt5.PublishPacket):  # skip our PUBACK of "after"
            ours = await peer.packet()
        assert ours.packet_id is not None
        peer.send(mqtt5.PubAckPacket(ours.packet_id).write())
        await peer.answer_pings()

    async with (
        HostileServer(script) as server,
        Mqtt5Link(server.settings()) as link,
        reading(link) as stream,
    ):
        assert await take(stream, 1) == [("t", b"after")]
        async with asyncio.timeout(WAIT):
            await link.publish("u", b"still connected")


async def test_a_packet_split_across_reads_at_any_offset_is_read_whole() -> None:
    data = mqtt5.PublishPacket("a/b", b"x" * 300, qos=QOS1, packet_id=1).write()
    data += mqtt5.PublishPacket("a/c", b"y" * 200).write()

    async def script(peer: Peer) -> None:
        await peer.accept()
        for cut in range(1, len(data)):
            for part in (data[:cut], data[cut:]):
                peer.send(part)
                await peer.writer.drain()
                await asyncio.sleep(0.002)  # the link reads each part on its own
        await peer.answer_pings()

    async with (
        HostileServer(script) as server,
        Mqtt5Link(server.settings()) as link,
        reading(link) as stream,
    ):
        received = await take(stream, 2 * (len(data) - 1), within=4 * WAIT)
    assert received == [("a/b", b"x" * 300), ("a/c", b"y" * 200)] * (len(data) - 1)


async def test_an_unsuback_for_our_subscribe_is_a_link_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.accept()
        subscribe = await peer.packet()
        assert isinstance(subscribe, mqtt5.SubscribePacket)
        success = mqtt5.UnsubAckReasonCode.SUCCESS
        peer.send(mqtt5.UnsubAckPacket(subscribe.packet_id, [success]).write())
        await peer.answer_pings()

    async with HostileServer(script) as server, Mqtt5Link(server.settings()) as link:
        with pytest.raises(LinkError, match="UnsubAckPacket"):
            async with asyncio.timeout(WAIT):
                await link.subscribe(["t"])


async def test_a_server_that_never_answers_subscribe_is_a_link_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server lives (it answers PINGREQ), so keepalive never gives up on it: without a
    # bound, the agent would wait for its SUBACK forever, neither serving nor reconnecting.
    monkeypatch.setattr(mqtt5_link, "CONNECT_TIMEOUT", 0.5)

    async def script(peer: Peer) -> None:
        await peer.accept()
        await peer.answer_pings()

    async with HostileServer(script) as server, Mqtt5Link(server.settings()) as link:
        with pytest.raises(LinkError, match="no SUBACK"):
            async with asyncio.timeout(WAIT):
                await link.subscribe(["t"])


async def test_a_server_that_never_answers_connect_leaves_no_error_unretrieved(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The CONNACK future outlived the attempt with an exception nobody retrieved: asyncio
    # logged "Future exception was never retrieved", with a traceback, at every retry.
    monkeypatch.setattr(mqtt5_link, "CONNECT_TIMEOUT", 0.3)

    async def script(peer: Peer) -> None:
        await peer.packet()  # the CONNECT, never answered
        await peer.answer_pings()

    async with HostileServer(script) as server:
        link = Mqtt5Link(server.settings())
        with caplog.at_level(logging.ERROR, logger="asyncio"):
            with pytest.raises(LinkError, match="no CONNACK"):
                async with asyncio.timeout(WAIT), link:
                    pytest.fail("connected without a CONNACK")
            del link
            gc.collect()
    assert "never retrieved" not in caplog.text


async def test_leaving_closes_the_socket_even_if_the_server_does_not_read() -> None:
    # A server that stopped reading kept our socket, and the megabytes we had written to
    # it, open after ``__aexit__`` for as long as it lived.
    async def script(peer: Peer) -> None:
        await peer.accept(receive_max=65_535)
        await asyncio.Event().wait()  # never reads again

    async with HostileServer(script) as server:
        link = Mqtt5Link(server.settings())
        async with link:
            wire = link._wire
            assert wire is not None
            assert wire.transport is not None
            for _ in range(400):
                link.publish_nowait("t", bytes(60_000))
            await asyncio.sleep(0.1)
            assert wire.transport.get_write_buffer_size() > 0  # the kernel's buffers are full
            sock = wire.transport.get_extra_info("socket")
        await asyncio.sleep(0.1)
        assert sock.fileno() == -1
