"""The one module that imports the MQTT client library (aiomqtt 2.x over paho).

Everything else speaks to ``MqttLink``: connect (MQTT 5, TCP_NODELAY, a persistent
session), subscribe at QoS 1, iterate ``(topic, payload)`` pairs, publish at QoS 1. Keeping
the library behind this seam means a faster client can replace it without touching the
agents.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agents.runtime.supervision import AgentFailedError

LinkError = aiomqtt.MqttError
SESSION_EXPIRY = 86_400  # seconds the broker keeps our subscriptions and QoS 1 backlog

REFUSALS: Final[dict[int, str]] = {
    0x84: "it does not speak MQTT 5",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorised (a wrong user name or password, or a new user before it reloaded)",
    0x8A: "this client is banned",
    0x8C: "bad authentication method",
}
"""CONNACK reason codes that say who we are is wrong: asking again cannot help.

Mosquitto 2 answers a wrong password with 0x87. Codes meaning "later" (server busy or
unavailable, connection rate exceeded) stay ordinary link errors, retried with backoff.
"""


class MqttRefusedError(AgentFailedError):
    """Mosquitto refused this client's credentials or authorisation.

    Not a ``LinkError``: the loop does not retry it, and it ends the agent (a daemon
    exits 1 with this line, a command fails at once) so the operator fixes the cause.
    """


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and as whom to connect."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    tls_ca: str | None = None
    keepalive: int = 30
    clean: bool = False


def tls_context(ca_file: str) -> ssl.SSLContext:
    """Trust only ``ca_file`` (not the system's CAs), check the host name, TLS 1.2 or newer.

    Only the operator's CA: a certificate any public CA issued for the broker's name must
    not be enough to stand in for the broker.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class MqttLink:
    """One connection; use ``async with`` (re-enterable after a disconnect)."""

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self._client: aiomqtt.Client | None = None

    def _make_client(self) -> aiomqtt.Client:
        settings = self.settings
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0 if settings.clean else SESSION_EXPIRY
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
            reason = REFUSALS.get(int(getattr(error.rc, "value", -1)))
            if reason is None:
                raise
            settings = self.settings
            raise MqttRefusedError(
                f"MQTT refused the connection as {settings.username!r}"
                f" at {settings.host}:{settings.port}: {reason}"
            ) from error
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(kind, error, trace)

    @property
    def client(self) -> aiomqtt.Client:
        """The connected client (only inside ``async with``)."""
        if self._client is None:
            raise LinkError("not connected")
        return self._client

    async def subscribe(self, filters: list[str]) -> None:
        """Subscribe to every filter at QoS 1."""
        if filters:
            await self.client.subscribe([(topic_filter, 1) for topic_filter in filters])

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """Received messages until the connection drops (then ``LinkError``).

        aiomqtt's iterator starts a task and an ``asyncio.wait`` for every message; once
        one has arrived, whatever else is already queued is taken straight from the
        client's queue, which under load is most messages.
        """
        client = self.client
        queue: asyncio.Queue[aiomqtt.Message] = client._queue  # noqa: SLF001 - see above
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

    def pending(self) -> int:
        """Messages already received and waiting to be read."""
        return len(self.client.messages)

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the broker's acknowledgement."""
        await self.client.publish(topic, payload, qos=1, retain=retain)
