"""The aiomqtt 2.x client (paho underneath) behind the ``MqttLink`` seam: ``--mqtt-client aiomqtt``.

Kept for comparison and as a fallback. Its limit: aiomqtt acknowledges a QoS 1 message
before our handler runs (empicano/aiomqtt#345), so ``messages(acknowledge=False)`` cannot
delay the PUBACK; with this client, what survives a crash between delivery and commit is
what the protocol's own receipts and retransmissions recover.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agents.runtime.mqtt_link import (
    MAX_PACKET_SIZE,
    RECEIVE_MAXIMUM,
    SESSION_EXPIRY,
    LinkError,
    MqttRefusedError,
    MqttSettings,
    check_packet_size,
    refusal_reason,
    tls_context,
)

NO_TOKEN: tuple[int, list[int]] = (0, [])


class AiomqttLink:
    """One connection; use ``async with`` (re-enterable after a disconnect)."""

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self._client: aiomqtt.Client | None = None

    def _make_client(self) -> aiomqtt.Client:
        settings = self.settings
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0 if settings.clean else SESSION_EXPIRY
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        properties.MaximumPacketSize = MAX_PACKET_SIZE
        tls = None if settings.tls_ca is None else tls_context(settings.tls_ca)
        return aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=settings.client_id or settings.username,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=settings.clean,
            properties=properties,
            keepalive=settings.keepalive,
            tls_context=tls,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            timeout=10,
        )

    async def __aenter__(self) -> Self:
        self._client = self._make_client()
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttCodeError as error:
            reason = refusal_reason(int(getattr(error.rc, "value", -1)))
            if reason is None:
                raise LinkError(str(error)) from error
            settings = self.settings
            raise MqttRefusedError(
                f"MQTT refused the connection as {settings.username!r}"
                f" at {settings.host}:{settings.port}: {reason}"
            ) from error
        except aiomqtt.MqttError as error:
            raise LinkError(str(error)) from error
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.__aexit__(kind, error, trace)
            except aiomqtt.MqttError as lost:
                raise LinkError(str(lost)) from lost

    @property
    def client(self) -> aiomqtt.Client:
        """The connected client (only inside ``async with``)."""
        if self._client is None:
            raise LinkError("not connected")
        return self._client

    async def subscribe(self, filters: list[str]) -> None:
        """Subscribe to every filter at QoS 1."""
        if filters:
            try:
                await self.client.subscribe([(topic_filter, 1) for topic_filter in filters])
            except aiomqtt.MqttError as error:
                raise LinkError(str(error)) from error

    async def messages(self, *, acknowledge: bool = True) -> AsyncIterator[tuple[str, bytes]]:
        """Received messages until the connection drops (then ``LinkError``).

        ``acknowledge`` is ignored: aiomqtt has acknowledged each message already. Its
        iterator starts a task and an ``asyncio.wait`` for every message; once one has
        arrived, whatever else is queued is taken straight from the client's queue.
        """
        del acknowledge
        client = self.client
        queue: asyncio.Queue[aiomqtt.Message] = client._queue  # noqa: SLF001 - see above
        try:
            async for first in client.messages:
                message = first
                while True:
                    payload = message.payload
                    if isinstance(payload, bytes | bytearray):
                        yield message.topic.value, bytes(payload)
                    try:
                        message = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
        except aiomqtt.MqttError as error:
            raise LinkError(str(error)) from error

    def pending(self) -> int:
        """Messages already received and waiting to be read."""
        return len(self.client.messages)

    def delivered(self) -> tuple[int, list[int]]:
        """Nothing to acknowledge later: aiomqtt acknowledged on receipt."""
        return NO_TOKEN

    def acknowledge(self, token: tuple[int, list[int]]) -> None:
        """Nothing to do (see ``delivered``)."""
        del token

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement."""
        check_packet_size(topic, payload, MAX_PACKET_SIZE)
        try:
            await self.client.publish(topic, payload, qos=1, retain=retain)
        except aiomqtt.MqttError as error:
            raise LinkError(str(error)) from error

    def has_room(self) -> bool:
        """Always: paho keeps its own queue of publishes beyond the server's window."""
        return True

    async def room(self) -> None:
        """Nothing to wait for (see ``has_room``)."""

    def publish_nowait(
        self, topic: str, payload: bytes, *, retain: bool = False
    ) -> asyncio.Future[None]:
        """``publish`` in a task: aiomqtt has no publish that does not wait."""
        return asyncio.ensure_future(self.publish(topic, payload, retain=retain))
