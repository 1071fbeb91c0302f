"""The in-house MQTT 5 client: asyncio transport, the ``mqtt5`` codec, nothing else.

Why not a general client: an agent needs a small part of MQTT (QoS 1 in both directions,
one persistent session, keepalive), and it needs two things general clients do not give:
PUBACK only once the message's effect is durable (``messages(acknowledge=False)`` plus
``acknowledge``), and little CPU per message. Packets are parsed straight from each
``data_received`` chunk (many per read), every PUBACK of a batch leaves in one write, and
received messages wait in a deque bounded by the Receive Maximum we announce: Mosquitto
may not send more unacknowledged QoS 1 messages than that, so when the agent's committer
falls behind, Mosquitto holds the rest, not our memory. Mosquitto 2.0 does send more once
acknowledgements flow (acknowledging the oldest message in flight releases up to a whole
window more), so the window is enforced here too: a QoS 1 message beyond it stays unread
in the socket, which is paused until enough are acknowledged. QoS 0 floods, which Receive
Maximum does not cover, pause the socket as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
import time
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Final, Self

import mqtt5

from agents.runtime.mqtt_link import (
    MAX_PACKET_SIZE,
    RECEIVE_MAXIMUM,
    SESSION_EXPIRY,
    LinkError,
    MqttRefusedError,
    MqttSettings,
    PublishRefusedError,
    check_packet_size,
    refusal_reason,
    tls_context,
)

log = logging.getLogger("micropay.mqtt")

CONNECT_TIMEOUT: Final = 10.0
PAUSE_AT: Final = 4 * RECEIVE_MAXIMUM
"""Messages waiting to be read past which the socket stops being read (QoS 0 floods)."""

_QOS1: Final = mqtt5.QoS.AT_LEAST_ONCE
_QOS2: Final = mqtt5.QoS.EXACTLY_ONCE
_PUBACK: Final = struct.Struct(">BBH")
"""A PUBACK with success and no properties: type 4, remaining length 2, the packet id.

What ``mqtt5.PubAckPacket(packet_id).write()`` gives, without building the object."""
_PUBACK_FAILURE: Final = 0x80


def _codec_panic(error: BaseException) -> bool:
    """Whether ``error`` is a panic of the codec (pyo3's ``PanicException``, a BaseException).

    ``mqtt5.read`` panics instead of raising ValueError on some malformed input (a string
    that is not UTF-8, in any packet): the server's fault, a malformed packet like any other,
    not an error that may escape into the agent and end it.
    """
    kind = type(error)
    return kind.__module__ == "pyo3_runtime" and kind.__name__ == "PanicException"


class _Outgoing:
    """A QoS 1 publish of ours until its PUBACK: retransmitted after a reconnect."""

    __slots__ = ("done", "packet")

    def __init__(self, packet: mqtt5.PublishPacket, done: asyncio.Future[None]) -> None:
        self.packet = packet
        self.done = done

    def again(self, *, duplicate: bool) -> bytes:
        """The publish to resend on a new connection (a packet's fields are read-only)."""
        packet = self.packet
        return mqtt5.PublishPacket(
            packet.topic,
            packet.payload,
            qos=_QOS1,
            retain=packet.retain,
            packet_id=packet.packet_id,
            duplicate=duplicate,
        ).write()


class _Wire(asyncio.Protocol):
    """One TCP (or TLS) connection: bytes in, packets out to the link."""

    def __init__(self, link: Mqtt5Link, generation: int) -> None:
        self.link = link
        self.generation = generation
        self.transport: asyncio.Transport | None = None
        self.rest = b""
        self.loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = self.loop.create_future()
        self.paused = False
        self.queued: list[bytes] = []  # written at the end of this turn of the event loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - asyncio's contract
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.paused:  # what a transport still hands over after pause_reading
            self.rest += data
            return
        buffer = self.rest + data if self.rest else data
        view = memoryview(buffer)
        offset, size = 0, len(buffer)
        link = self.link
        link._last_read = time.monotonic()  # noqa: SLF001 - the link's own wire
        on_packet, on_publish = link._on_packet, link._on_publish  # noqa: SLF001
        read, publish = mqtt5.read, mqtt5.PublishPacket
        try:
            while offset < size:
                packet, used = read(view[offset:])
                if type(packet) is publish:  # most packets: straight to the inbox
                    if not on_publish(packet):  # beyond our Receive Maximum: read it later
                        self.pause()
                        break
                else:
                    on_packet(packet)
                offset += used
        except IndexError:  # a partial packet: keep it for the next read
            if size - offset > MAX_PACKET_SIZE + 5:
                # A LinkError, not PacketTooLargeError: that one means "this publish of
                # ours is too large" (the loop drops that message); this is the connection.
                self.fail(LinkError("the server sent a packet larger than allowed"))
                return
        except ValueError as error:
            self.fail(LinkError(f"malformed packet from the server: {error}"))
            return
        except BaseException as error:
            if not _codec_panic(error):
                raise
            self.fail(LinkError(f"malformed packet from the server: {error}"))
            return
        finally:
            view.release()
        self.rest = buffer[offset:] if offset < size else b""

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.link._on_lost(self, exc)  # noqa: SLF001

    def write(self, data: bytes) -> None:
        """Queue bytes; everything queued in one turn of the event loop leaves in one send.

        A vendor's PUBACKs and receipts, or a load generator's payments, would otherwise
        cost one ``send`` each, on our side and on the server's reading side.
        """
        if not self.queued:
            self.loop.call_soon(self.flush)
        self.queued.append(data)

    def flush(self) -> None:
        """Write what is queued now (``call_soon`` does it at the end of the turn)."""
        if not self.queued:
            return
        data = b"".join(self.queued) if len(self.queued) > 1 else self.queued[0]
        self.queued.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.link._last_write = time.monotonic()  # noqa: SLF001

    def fail(self, error: LinkError) -> None:
        self.link._fail(self, error)  # noqa: SLF001
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.link._last_read = time.monotonic()  # noqa: SLF001
            self.transport.resume_reading()
            if self.rest:  # packets left unread when the socket was paused
                self.data_received(b"")


class Mqtt5Link:
    """One MQTT 5 session over successive connections; use ``async with`` per connection.

    The session (our unacknowledged publishes, their packet ids) outlives a connection:
    re-entering resends them with DUP set, so a publish awaited across a reconnect
    completes when the server finally acknowledges it.
    """

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self._wire: _Wire | None = None
        self._generation = 0
        self._error: LinkError | None = None
        self._ids = itertools.cycle(range(1, 65_536))
        self._outgoing: dict[int, _Outgoing] = {}
        self._window = RECEIVE_MAXIMUM  # the server's Receive Maximum, once connected
        self._room = asyncio.Event()  # set while the server's window has room
        self._room.set()
        self._server_max_packet = MAX_PACKET_SIZE
        self._requests: dict[int, asyncio.Future[mqtt5.Packet]] = {}
        self._connack: asyncio.Future[mqtt5.ConnAckPacket] | None = None
        self._inbox: deque[tuple[str, bytes, int]] = deque()
        self._arrived = asyncio.Event()
        self._delivered: list[int] = []
        self._pubacks: list[bytes] = []
        self.unacknowledged = 0  # QoS 1 messages received on this connection, not yet PUBACKed
        self._last_read = self._last_write = time.monotonic()
        self._keepalive_task: asyncio.Task[None] | None = None
        self.session_present = False

    # --- connecting --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        settings = self.settings
        self._generation += 1
        self._error = None
        self._inbox.clear()
        self._delivered.clear()
        self._pubacks.clear()
        self.unacknowledged = 0
        loop = asyncio.get_running_loop()
        tls = None if settings.tls_ca is None else tls_context(settings.tls_ca)
        wire = _Wire(self, self._generation)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(
                    lambda: wire,
                    settings.host,
                    settings.port,
                    ssl=tls,
                    server_hostname=settings.host if tls else None,
                )
        except TimeoutError as error:
            raise LinkError(f"timed out connecting to {settings.host}:{settings.port}") from error
        except OSError as error:  # refused, unreachable, a TLS certificate that fails
            where = f"{settings.host}:{settings.port}"
            raise LinkError(f"cannot connect to {where}: {error}") from error
        self._wire = wire
        try:
            connack = await self._handshake(wire)
        except BaseException:
            if self._connack is not None:
                self._connack.cancel()  # nobody awaits it now: no "exception never retrieved"
            self._drop(wire)
            raise
        self._accept(connack, wire)
        return self

    async def _handshake(self, wire: _Wire) -> mqtt5.ConnAckPacket:
        settings = self.settings
        self._connack = asyncio.get_running_loop().create_future()
        connect = mqtt5.ConnectPacket(
            settings.client_id or settings.username or "",
            username=settings.username,
            password=None if settings.password is None else settings.password.encode(),
            clean_start=settings.clean,
            keep_alive=settings.keepalive,
            session_expiry_interval=0 if settings.clean else SESSION_EXPIRY,
            receive_max=RECEIVE_MAXIMUM,
            max_packet_size=MAX_PACKET_SIZE,
        )
        wire.write(connect.write())
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                connack = await asyncio.shield(self._connack)
        except TimeoutError as error:
            raise LinkError(f"no CONNACK from {settings.host}:{settings.port}") from error
        code = int(connack.reason_code)
        if code >= _PUBACK_FAILURE:
            reason = refusal_reason(code)
            where = f"as {settings.username!r} at {settings.host}:{settings.port}"
            if reason is not None:
                raise MqttRefusedError(f"MQTT refused the connection {where}: {reason}")
            name = connack.reason_code.name.lower().replace("_", " ")
            raise LinkError(f"MQTT refused the connection {where}: {name} ({code:#x})")
        return connack

    def _accept(self, connack: mqtt5.ConnAckPacket, wire: _Wire) -> None:
        """Adopt the server's limits, resend our unacknowledged publishes, start keepalive."""
        self.session_present = connack.session_present
        self._window = max(connack.receive_max, 1)
        self._make_room()
        self._server_max_packet = min(connack.max_packet_size or MAX_PACKET_SIZE, MAX_PACKET_SIZE)
        for pending in self._outgoing.values():
            wire.write(pending.again(duplicate=connack.session_present))
        keepalive = connack.server_keep_alive or self.settings.keepalive
        self._last_read = self._last_write = time.monotonic()
        if keepalive > 0:
            self._keepalive_task = asyncio.create_task(
                self._keepalive(wire, keepalive), name="mqtt-keepalive"
            )

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        wire, self._wire = self._wire, None
        if wire is None:
            return
        if wire.transport is not None and not wire.transport.is_closing():
            self._flush_pubacks(wire)
            wire.write(mqtt5.DisconnectPacket().write())
            wire.flush()
            wire.transport.close()
        self._drop(wire)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await wire.lost
        finally:
            # A server that does not read would keep the socket, and all we wrote to it,
            # open past close(): not past this second.
            if wire.transport is not None:
                wire.transport.abort()

    def _drop(self, wire: _Wire) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            self._keepalive_task = None
        if wire.transport is not None and not wire.transport.is_closing():
            wire.transport.abort()
        if self._wire is wire:
            self._wire = None
        self._fail(wire, LinkError("disconnected"))

    async def _keepalive(self, wire: _Wire, keepalive: int) -> None:
        """PINGREQ when we have been quiet; give up on a server silent for 1.5 keepalives."""
        interval = keepalive / 2
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            if not wire.paused and now - self._last_read > keepalive * 1.5:
                wire.fail(LinkError(f"no answer from the server in {keepalive * 1.5:g} s"))
                return
            if now - self._last_write >= interval:
                wire.write(mqtt5.PingReqPacket().write())

    # --- from the wire -----------------------------------------------------------------------

    def _on_packet(self, packet: mqtt5.Packet) -> bool:
        """Act on one packet; False leaves it unread (a publish beyond our Receive Maximum)."""
        match packet:
            case mqtt5.PublishPacket():
                return self._on_publish(packet)
            case mqtt5.PubAckPacket():
                self._on_puback(packet)
            case mqtt5.SubAckPacket() | mqtt5.UnsubAckPacket():
                request = self._requests.pop(packet.packet_id, None)
                if request is not None and not request.done():
                    request.set_result(packet)
            case mqtt5.ConnAckPacket():
                if self._connack is not None and not self._connack.done():
                    self._connack.set_result(packet)
            case mqtt5.DisconnectPacket():
                name = packet.reason_code.name.lower().replace("_", " ")
                reason = f" ({packet.reason_str})" if packet.reason_str else ""
                self._fail_current(LinkError(f"the server disconnected us: {name}{reason}"))
            case mqtt5.PingRespPacket():
                pass
            case _:
                self._fail_current(LinkError(f"unexpected {type(packet).__name__} from the server"))
        return True

    def _on_puback(self, packet: mqtt5.PubAckPacket) -> None:
        pending = self._outgoing.pop(packet.packet_id, None)
        if pending is None:
            return
        if not self._room.is_set():
            self._make_room()
        if pending.done.done():
            return
        code = int(packet.reason_code)
        if code < _PUBACK_FAILURE:
            pending.done.set_result(None)
            return
        name = packet.reason_code.name.lower().replace("_", " ")
        pending.done.set_exception(
            PublishRefusedError(
                f"the server refused a publish to {pending.packet.topic}: {name} ({code:#x})"
            )
        )

    def _on_publish(self, packet: mqtt5.PublishPacket) -> bool:
        qos = packet.qos
        packet_id = (packet.packet_id or 0) if qos == _QOS1 else 0
        if qos == _QOS2:
            self._fail_current(LinkError("the server sent QoS 2, which we never asked for"))
            return True
        if packet_id:
            if self.unacknowledged >= RECEIVE_MAXIMUM:
                return False
            self.unacknowledged += 1
        self._inbox.append((packet.topic, packet.payload, packet_id))
        self._arrived.set()
        wire = self._wire
        if wire is not None and len(self._inbox) >= PAUSE_AT:
            wire.pause()
        return True

    def _on_lost(self, wire: _Wire, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        self._fail(wire, LinkError(f"connection lost{detail}"))

    def _fail_current(self, error: LinkError) -> None:
        if self._wire is not None:
            self._wire.fail(error)

    def _fail(self, wire: _Wire, error: LinkError) -> None:
        """The connection is gone: wake the reader and anyone waiting on a reply."""
        if wire.generation != self._generation or self._error is not None:
            return
        self._error = error
        self._arrived.set()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(error)
        for request in self._requests.values():
            if not request.done():
                request.set_exception(error)
        self._requests.clear()

    # --- what the agents call ----------------------------------------------------------------

    def _connected(self) -> _Wire:
        wire = self._wire
        if wire is None or self._error is not None:
            raise self._error or LinkError("not connected")
        return wire

    def _next_id(self) -> int:
        """A packet id no publish or subscription of ours in flight is using."""
        outgoing, requests = self._outgoing, self._requests
        for packet_id in self._ids:
            if packet_id not in outgoing and packet_id not in requests:
                return packet_id
        raise AssertionError("unreachable: the cycle never ends")  # pragma: no cover

    async def subscribe(self, filters: list[str]) -> None:
        """Subscribe at QoS 1; a filter the server refuses is logged, not retried."""
        if not filters:
            return
        wire = self._connected()
        packet_id = self._next_id()
        reply: asyncio.Future[mqtt5.Packet] = asyncio.get_running_loop().create_future()
        self._requests[packet_id] = reply
        topic_filters = [mqtt5.TopicFilter(f, max_qos=_QOS1) for f in filters]
        wire.write(mqtt5.SubscribePacket(packet_id, topic_filters).write())
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                suback = await reply
        except TimeoutError as error:
            self._requests.pop(packet_id, None)
            where = f"{self.settings.host}:{self.settings.port}"
            raise LinkError(f"no SUBACK from {where} in {CONNECT_TIMEOUT:g} s") from error
        if not isinstance(suback, mqtt5.SubAckPacket):  # an UNSUBACK with our SUBSCRIBE's id
            raise LinkError(f"the server answered our SUBSCRIBE with {type(suback).__name__}")
        for topic_filter, code in zip(filters, suback.reason_codes, strict=False):
            if int(code) >= _PUBACK_FAILURE:
                log.warning("subscription to %s refused: %s", topic_filter, code.name.lower())

    async def messages(self, *, acknowledge: bool = True) -> AsyncIterator[tuple[str, bytes]]:
        """Received messages as ``(topic, payload)`` until the connection drops (``LinkError``).

        ``acknowledge=False``: nothing is acknowledged until the caller passes what
        ``delivered`` returned to ``acknowledge``, after the messages' effect is durable.
        """
        inbox, delivered = self._inbox, self._delivered
        generation = self._generation
        while True:
            if not inbox:
                self._flush_pubacks(self._wire)
                self._resume()
                if inbox:
                    continue
                if self._error is not None or generation != self._generation:
                    raise self._error or LinkError("disconnected")
                self._arrived.clear()
                await self._arrived.wait()
                continue
            topic, payload, packet_id = inbox.popleft()
            if packet_id:
                if acknowledge:
                    self._pubacks.append(_PUBACK.pack(0x40, 2, packet_id))
                else:
                    delivered.append(packet_id)
            yield topic, payload

    def pending(self) -> int:
        """Messages already received and waiting to be read."""
        return len(self._inbox)

    def delivered(self) -> tuple[int, list[int]]:
        """What ``messages(acknowledge=False)`` yielded since the last call, to acknowledge."""
        taken = self._delivered[:]
        self._delivered.clear()
        return self._generation, taken

    def acknowledge(self, token: tuple[int, list[int]]) -> None:
        """PUBACK, in one write, messages whose effect is now durable.

        Messages of an earlier connection are not acknowledged: the server redelivers them
        on this one, and the agents' handlers are idempotent.
        """
        generation, packet_ids = token
        wire = self._wire
        if not packet_ids or generation != self._generation or wire is None:
            return
        puback = _PUBACK.pack
        wire.write(b"".join([puback(0x40, 2, i) for i in packet_ids]))
        self.unacknowledged = max(self.unacknowledged - len(packet_ids), 0)
        self._resume()

    def _flush_pubacks(self, wire: _Wire | None) -> None:
        if self._pubacks and wire is not None:
            wire.write(b"".join(self._pubacks))
            self.unacknowledged = max(self.unacknowledged - len(self._pubacks), 0)
        self._pubacks.clear()

    def _resume(self) -> None:
        """Read the socket again once everything was read and the window has room."""
        wire = self._wire
        room = self.unacknowledged < RECEIVE_MAXIMUM
        if wire is not None and wire.paused and not self._inbox and room:
            wire.resume()

    def _make_room(self) -> None:
        if len(self._outgoing) < self._window:
            self._room.set()
        else:
            self._room.clear()

    def has_room(self) -> bool:
        """Whether ``publish_nowait`` may be called: the server's window is not full."""
        return len(self._outgoing) < self._window

    async def room(self) -> None:
        """Wait until the server's window has room for another publish."""
        while not self.has_room():
            self._room.clear()
            await self._room.wait()

    def publish_nowait(
        self, topic: str, payload: bytes, *, retain: bool = False
    ) -> asyncio.Future[None]:
        """Send a QoS 1 publish now; the returned future completes at its PUBACK.

        For a caller that keeps many messages in flight (a load generator, a buyer's
        pipeline) without a task per message; it must first check ``has_room`` (or await
        ``room``): exceeding the server's Receive Maximum is a protocol error.
        """
        wire = self._connected()
        check_packet_size(topic, payload, self._server_max_packet)
        if not self.has_room():
            raise LinkError("the server's Receive Maximum is reached: await room() first")
        packet_id = self._next_id()
        packet = mqtt5.PublishPacket(topic, payload, qos=_QOS1, retain=retain, packet_id=packet_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outgoing[packet_id] = _Outgoing(packet, done)
        wire.write(packet.write())
        return done

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the server's PUBACK (across reconnects)."""
        self._connected()
        if not self.has_room():
            await self.room()
        await self.publish_nowait(topic, payload, retain=retain)
