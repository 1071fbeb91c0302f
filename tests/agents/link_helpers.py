"""What the MqttLink contract tests share: who talks to whom, and bounded ways to wait.

vendor1 subscribes to its inbox and buyer1 publishes there, as the ACL allows; a link
may also publish to its own inbox (``SELF``) to hear itself. Every wait is bounded, and
"nothing else arrived" is shown with a sentinel published after the message under test:
Mosquitto keeps one publisher's order, so once the sentinel is read, the other message
would have been read before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from agents.runtime.mqtt import ClientName, LinkError, MqttLink, MqttSettings
from protocol import topics
from tests.agents.conftest import Broker

WAIT = 5.0  # seconds: a bound on any wait that should end at once, never a fixed sleep

FILTER = topics.inbox_filter("vendor1")
INBOX = topics.inbox("vendor1", "buyer1")  # buyer1 to vendor1
SELF = topics.inbox("vendor1", "vendor1")  # vendor1 to itself
ELSEWHERE = topics.inbox("buyer1", "vendor1")  # vendor1 to buyer1, who does not listen
SENTINEL = b"sentinel"

Messages = AsyncIterator[tuple[str, bytes]]


def settings(broker: Broker, user: str, client: ClientName, **changes: Any) -> MqttSettings:
    """``user``'s settings on ``broker`` (a persistent session), with the client under test."""
    return replace(broker.user(user), client=client, **changes)


def numbered(count: int, start: int = 0) -> list[bytes]:
    """Payloads ``b"0"``, ``b"1"``… that show order and completeness at a glance."""
    return [b"%d" % i for i in range(start, start + count)]


@asynccontextmanager
async def reading(link: MqttLink, *, acknowledge: bool = True) -> AsyncIterator[Messages]:
    """``link.messages(acknowledge=...)``, closed when the block ends."""
    stream = link.messages(acknowledge=acknowledge)
    try:
        yield stream
    finally:
        if isinstance(stream, AsyncGenerator):
            await stream.aclose()


async def take(stream: Messages, count: int, within: float = WAIT) -> list[tuple[str, bytes]]:
    """The next ``count`` messages of ``stream``."""
    async with asyncio.timeout(within):
        return [await anext(stream) for _ in range(count)]


async def payloads_until_sentinel(stream: Messages, within: float = WAIT) -> list[bytes]:
    """The payloads of ``stream`` up to (not including) the sentinel."""
    received: list[bytes] = []
    async with asyncio.timeout(within):
        async for _topic, payload in stream:
            if payload == SENTINEL:
                return received
            received.append(payload)
    raise AssertionError("the stream ended without the sentinel")  # pragma: no cover


async def dropped(link: MqttLink, within: float = WAIT) -> LinkError:
    """The ``LinkError`` by which ``link``'s reader learns its connection is gone."""
    async with asyncio.timeout(within):
        try:
            async for _message in link.messages():
                pass
        except LinkError as error:
            return error
    raise AssertionError("messages() ended without an error")  # pragma: no cover


async def barrier(link: MqttLink) -> None:
    """A publish by vendor1's ``link`` and its PUBACK.

    Once it returns, Mosquitto has read all ``link`` wrote before (PUBACKs included), and
    ``link`` has read all Mosquitto had written to it before the PUBACK.
    """
    async with asyncio.timeout(WAIT):
        await link.publish(ELSEWHERE, b"barrier")
