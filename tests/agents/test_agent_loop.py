"""``AgentLoop`` when things go wrong: a reconnect under its publisher, a store that fails.

Whatever the committer released is durable and must reach Mosquitto: a message the
publisher had taken from its queue when the connection dropped is sent on the next one,
not lost (on a real Mosquitto behind a TCP proxy). A store that fails must end the loop,
not freeze it. A scripted core stands in for a role's: it publishes what the test queues.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Literal

import aiomqtt
import pytest

from agents.runtime import loop as loop_module
from agents.runtime.loop import AgentLoop
from agents.runtime.mqtt import MqttSettings, open_link
from agents.runtime.mqtt5_link import Mqtt5Link
from protocol import topics
from protocol.events import HeldReply, Outgoing
from tests.agents.conftest import Broker, Endpoint
from tests.agents.harness import wait_until
from tests.agents.link_helpers import FILTER, INBOX, SENTINEL, WAIT, numbered, settings
from tests.agents.tcp_proxy import Proxy

pytestmark = pytest.mark.asyncio

MOSQUITTO_WINDOW = 100  # max_inflight_messages in mosquitto.conf: its Receive Maximum


@dataclass
class Scripted:
    """A core that publishes what it is told to and records what it receives."""

    account: str = "buyer1"
    outbox: list[Outgoing] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)

    def queue(self, payloads: list[bytes]) -> str:
        """Queue publishes to vendor1's inbox; the event that goes with them."""
        self.outbox.extend(Outgoing(INBOX, payload) for payload in payloads)
        return f"queued {len(payloads)}"

    def subscriptions(self) -> list[str]:
        return [topics.inbox_filter("buyer1")]

    def receive(self, topic: str, payload: bytes, now: float) -> list[str]:
        del topic, now
        self.received.append(payload)
        return [f"received {payload!r}"]

    def data_to_send(self) -> list[Outgoing]:
        out, self.outbox = self.outbox, []
        return out

    def held_replies(self) -> list[HeldReply]:
        return []

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> list[str]:
        del now
        return []


async def durable(events: list[str]) -> None:
    del events


@asynccontextmanager
async def running(loop: AgentLoop[str]) -> AsyncIterator[asyncio.Task[None]]:
    """The loop running, connected; stopped when the block ends."""
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(WAIT):
            await loop.connected.wait()
        yield task
    finally:
        loop.stopping.set()
        async with asyncio.timeout(3 * WAIT):
            await task


async def payloads_until_sentinel(vendor: aiomqtt.Client) -> list[bytes]:
    received: list[bytes] = []
    async with asyncio.timeout(3 * WAIT):
        async for message in vendor.messages:
            assert isinstance(message.payload, bytes)
            if message.payload == SENTINEL:
                return received
            received.append(message.payload)
    raise AssertionError("no sentinel")  # pragma: no cover


@pytest.mark.parametrize("bound", ["window", "in flight"])
async def test_a_message_waiting_to_be_published_survives_a_reconnect(
    mosquitto: Broker, bound: Literal["window", "in flight"]
) -> None:
    # The proxy swallows Mosquitto's PUBACKs: what the loop publishes stays in flight, and
    # the publisher waits with the next message in hand, for room in Mosquitto's window
    # or for one of the loop's own in-flight slots. Then the connection drops.
    sent = numbered(150)
    core = Scripted()
    async with (
        Proxy(mosquitto.port) as proxy,
        Endpoint(mosquitto.port).client("vendor1") as vendor,
    ):
        await vendor.subscribe(FILTER, qos=1)
        link = open_link(settings(mosquitto, "buyer1", "mqtt5", port=proxy.port))
        loop = AgentLoop(core, link, durable)
        limit = MOSQUITTO_WINDOW
        if bound == "in flight":
            limit = MOSQUITTO_WINDOW // 2
            loop._in_flight = asyncio.Semaphore(limit)
        async with running(loop):
            proxy.swallow("down")
            await loop.act(lambda _now: core.queue(sent))
            await wait_until(lambda: loop._outbox.qsize() == len(sent) - limit - 1)
            proxy.cut()
            proxy.forward()
            await wait_until(lambda: proxy.connections == 2 and loop.connected.is_set())
            assert await loop.drain(WAIT)  # every publish acknowledged, none left over
            await loop.act(lambda _now: core.queue([SENTINEL]))
            received = await payloads_until_sentinel(vendor)
    assert set(received) == set(sent)  # the ones in flight may come twice (DUP)


async def test_messages_released_to_a_dead_connection_are_published_on_the_next(
    mosquitto: Broker,
) -> None:
    # The connection dies while the committer persists; the reader, waiting for the lock
    # an operator command holds, cannot end the connection's tasks yet. The committer then
    # releases five durable messages: the publisher must keep them for the next connection,
    # not fail each on the dead one.
    sent = numbered(5)
    core = Scripted()
    disk = asyncio.Event()
    command_done = asyncio.Event()

    async def slow_disk(events: list[str]) -> None:
        del events
        await disk.wait()

    async with (
        Proxy(mosquitto.port) as proxy,
        Endpoint(mosquitto.port).client("vendor1") as vendor,
    ):
        await vendor.subscribe(FILTER, qos=1)
        link = Mqtt5Link(settings(mosquitto, "buyer1", "mqtt5", port=proxy.port))
        loop = AgentLoop(core, link, slow_disk)
        async with running(loop):
            await loop.record(lambda _now: core.queue(sent))
            await wait_until(lambda: not loop._staged_events)  # the committer has them
            command = asyncio.create_task(loop.act_async(command_done.wait))
            await wait_until(loop._lock.locked)
            await vendor.publish(topics.inbox("buyer1", "vendor1"), b"to buyer1", qos=1)
            await wait_until(lambda: link.pending() == 0 and link.unacknowledged == 1)
            proxy.cut()
            await wait_until(lambda: link._error is not None)
            disk.set()
            await wait_until(lambda: loop.commits == 1)
            await asyncio.sleep(0.1)  # the publisher has had its go at the dead connection
            command_done.set()
            await command
            await wait_until(lambda: proxy.connections == 2 and loop.connected.is_set())
            assert await loop.drain(WAIT)
            await loop.act(lambda _now: core.queue([SENTINEL]))
            assert await payloads_until_sentinel(vendor) == sent
        assert b"to buyer1" in core.received  # unacknowledged, so delivered again


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """``TimeoutError`` in whatever runs after ``seconds``, even code that never yields."""

    def ring(_signum: int, _frame: object) -> None:
        raise TimeoutError("the event loop was frozen")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


async def test_a_store_that_fails_under_a_backlog_ends_the_loop_instead_of_freezing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A caller past MAX_STAGED waits for the committer; the committer's store then fails.
    # The caller spun on "not covered yet, but the commit failed" without ever yielding:
    # the whole process froze, at full CPU, instead of stopping with the store's error.
    monkeypatch.setattr(loop_module, "MAX_STAGED", 3)
    disk = asyncio.Event()

    async def failing_disk(events: list[str]) -> None:
        del events
        await disk.wait()
        raise OSError("disk full")

    loop = AgentLoop(Scripted(), open_link(MqttSettings()), failing_disk)
    await loop.record(lambda _now: "first")
    await wait_until(lambda: not loop._staged_events)  # the committer has it, on the disk
    for _ in range(2):
        await loop.record(lambda _now: "more")
    behind = asyncio.create_task(loop.record(lambda _now: "one too many"))
    await wait_until(lambda: len(loop._staged_events) == 3)
    assert not behind.done()  # it waits for the committer
    with alarm(WAIT):
        disk.set()
        assert await behind == "one too many"
    with pytest.raises(OSError, match="disk full"):  # and the next one learns why
        await loop.record(lambda _now: "after")
