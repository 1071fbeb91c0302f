"""The seam between the agents and an MQTT client: ``MqttLink`` and ``open_link``.

Everything else speaks to ``MqttLink``: connect (MQTT 5, TCP_NODELAY, a persistent
session), subscribe at QoS 1, iterate ``(topic, payload)`` pairs, publish at QoS 1, and
acknowledge what was received once its effect is durable. ``MqttSettings.client`` picks
the implementation: the in-house client on the ``mqtt5`` codec (default) or aiomqtt 2.x.
A future client (aiomqtt 3, built on the same codec) goes in behind the same protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, Self

from agents.runtime.mqtt5_link import Mqtt5Link
from agents.runtime.mqtt_link import (
    CLIENTS,
    ClientName,
    LinkError,
    MqttRefusedError,
    MqttSettings,
    PacketTooLargeError,
    PublishRefusedError,
    tls_context,
)

__all__ = [
    "CLIENTS",
    "AckToken",
    "ClientName",
    "LinkError",
    "MqttLink",
    "MqttRefusedError",
    "MqttSettings",
    "PacketTooLargeError",
    "PublishRefusedError",
    "open_link",
    "tls_context",
]

AckToken = tuple[int, list[int]]
"""Which connection, and the packet ids read on it, to acknowledge once durable."""


class MqttLink(Protocol):
    """One MQTT session over successive connections; ``async with`` holds one connection."""

    settings: MqttSettings

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None: ...

    async def subscribe(self, filters: list[str]) -> None:
        """Subscribe to every filter at QoS 1."""

    def messages(self, *, acknowledge: bool = True) -> AsyncIterator[tuple[str, bytes]]:
        """Received messages until the connection drops (then ``LinkError``).

        With ``acknowledge=False`` the caller acknowledges: ``acknowledge(delivered())``
        once what it read is durable.
        """

    def pending(self) -> int:
        """Messages already received and waiting to be read."""

    def delivered(self) -> AckToken:
        """The messages read since the last call, as a token for ``acknowledge``."""

    def acknowledge(self, token: AckToken) -> None:
        """Acknowledge (PUBACK) the messages of a token, if their connection still stands."""

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 and wait for the server's acknowledgement."""

    def has_room(self) -> bool:
        """Whether ``publish_nowait`` may be called now (the server's window has room)."""

    async def room(self) -> None:
        """Wait until ``has_room``."""

    def publish_nowait(
        self, topic: str, payload: bytes, *, retain: bool = False
    ) -> asyncio.Future[None]:
        """Start a QoS 1 publish; the future completes at the server's acknowledgement."""


def open_link(settings: MqttSettings) -> MqttLink:
    """A link using the client ``settings.client`` names."""
    if settings.client == "aiomqtt":
        from agents.runtime.aiomqtt_link import AiomqttLink  # noqa: PLC0415 - paho only if chosen

        return AiomqttLink(settings)
    return Mqtt5Link(settings)
