"""The attacker: a raw MQTT client, optionally driving a real protocol core with its keys.

A rogue buyer or vendor is a genuine core (own or stolen keys) whose messages the test may
alter before publishing them itself; nothing goes through the agents' shells, so every
check the attack meets is the attacked agent's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest_asyncio

from agents.daemons.broker_daemon import BrokerDaemon
from agents.daemons.vendor_agent import VendorAgent
from protocol import topics
from protocol.buyer import BuyerCore
from protocol.credentials import sign_commitment
from protocol.crypto import AgentKeys, MacKey
from protocol.endpoint import Endpoint
from protocol.envelope import Auth
from protocol.events import Outgoing
from protocol.messages import Commit, Commitment, Payment, Redeem
from protocol.vendor import VendorCore, VendorTerms
from tests.agents.conftest import Broker
from tests.agents.harness import Harness, wait_until
from tests.support.forgery import chain_mac_key


@dataclass
class Rogue:
    """A connected raw client; ``core`` (if any) is fed everything the client receives."""

    client: aiomqtt.Client
    core: BuyerCore | VendorCore | None
    events: list[object] = field(default_factory=list)
    received: list[tuple[str, bytes]] = field(default_factory=list)

    async def _read(self) -> None:
        async for message in self.client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            topic = str(message.topic)
            self.received.append((topic, payload))
            if self.core is not None:
                self.events.extend(self.core.receive(topic, payload, time.time()))

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        await self.client.publish(topic, payload, qos=1, retain=retain)

    def take(self) -> list[Outgoing]:
        """What the core queued, not yet published (the attacker may alter it first)."""
        assert self.core is not None
        return self.core.data_to_send()

    async def flush(self) -> list[Outgoing]:
        """Publish everything the core queued, unaltered."""
        out = self.take()
        for message in out:
            await self.publish(message.topic, message.payload, retain=message.retain)
        return out

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        await wait_until(condition, timeout)


@asynccontextmanager
async def rogue(
    mosquitto: Broker,
    user: str,
    core: BuyerCore | VendorCore | None = None,
    subscribe: tuple[str, ...] = (),
) -> AsyncIterator[Rogue]:
    """Connect as MQTT ``user`` (whose password the attacker has) and read ``subscribe``."""
    settings = mosquitto.user(user)
    async with aiomqtt.Client(
        "127.0.0.1",
        mosquitto.port,
        username=settings.username,
        password=settings.password,
        identifier=user,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    ) as client:
        filters = [*subscribe, *(core.subscriptions() if core is not None else [])]
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)
        attacker = Rogue(client, core)
        reader = asyncio.create_task(attacker._read())
        try:
            yield attacker
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def buyer_core(harness: Harness, name: str, credit_limit: int = 10**6) -> BuyerCore:
    """Open an account, enroll ``name`` through a real buyer agent, return its core.

    The core holds the buyer's real keys and certificate: a buyer gone rogue, or a thief
    holding a stolen device's wallet.
    """
    token = await harness.open_account(name, "buyer", credit_limit)
    agent = await harness.buyer(name)
    await agent.run(lambda: agent.enroll(token))
    return agent.core


async def wallet_core(harness: Harness, name: str) -> BuyerCore:
    """The core of an enrolled buyer's wallet on disk (its store closed again)."""
    agent = await harness.buyer(name)
    await agent.store.close()
    return agent.core


async def offered(attacker: Rogue, *vendors: str) -> None:
    """Wait until the rogue buyer's core has read the vendors' retained offers."""
    core = attacker.core
    assert isinstance(core, BuyerCore)
    await attacker.wait_for(lambda: all(v in core.offers for v in vendors))


async def pay_through(
    buyer: Rogue, vendor: VendorAgent, *payments: int, length: int = 100
) -> tuple[bytes, list[Outgoing]]:
    """Open a chain at ``vendor``, make ``payments`` (units each) and publish everything.

    Returns the commitment id and the envelopes sent (the commit first), once the vendor
    has accepted them all.
    """
    core = buyer.core
    assert isinstance(core, BuyerCore)
    name = vendor.core.account
    await offered(buyer, name)
    expected = vendor.counters.amount + sum(payments) * core.offers[name].offer.unit_value
    cid = core.open_channel(name, length, time.time()).commitment_id
    for units in payments:
        core.pay(cid, units, time.time())
    sent = await buyer.flush()
    await wait_until(lambda: vendor.counters.amount == expected)
    return cid, sent


async def paid(harness: AttackHarness, units: int, buyer: str = "buyer1") -> bytes:
    """``buyer`` (enrolled here) pays vendor1 ``units`` on a 100-long chain."""
    core = await buyer_core(harness, buyer)
    async with rogue(harness.mosquitto, buyer, core) as attacker:
        cid, _ = await pay_through(attacker, harness.vendors["vendor1"], units)
    return cid


def queue_redeem(vendor: VendorCore, signed: bytes, index: int, word: bytes) -> None:
    """Queue a redemption to the broker under the vendor's pair key (it may be a lie)."""
    body = Redeem(signed, index, word)
    vendor.send(vendor.broker.id, body, time.time(), auth=Auth.PAIR, key=vendor.broker_key)


async def halt_vendor(harness: AttackHarness, name: str) -> VendorAgent:
    """Stop a vendor's daemon without redeeming: its core is then the attacker's."""
    vendor = harness.vendors.pop(name)
    vendor.loop.stopping.set()
    task = harness.vendor_tasks.pop(name)
    await asyncio.wait_for(task, 20)
    harness.tasks.remove(task)
    return vendor


class AttackHarness(Harness):
    """The agents' harness, remembering each vendor's task so one can be halted."""

    def __init__(self, root: Path, mosquitto: Broker) -> None:
        super().__init__(root, mosquitto)
        self.vendor_tasks: dict[str, asyncio.Task[None]] = {}

    async def start_broker(self, witness_interval: float = 0.2) -> BrokerDaemon:
        daemon = await super().start_broker(witness_interval)
        self.broker_task = self.tasks[-1]
        return daemon

    async def stop_broker(self) -> None:
        """Stop the broker daemon (it signs the ledger head as it closes)."""
        assert self.daemon is not None
        await self.daemon.stop()
        await asyncio.wait_for(self.broker_task, 20)

    async def start_vendor(self, name: str, terms: VendorTerms | None = None) -> VendorAgent:
        vendor = await super().start_vendor(name, terms)
        self.vendor_tasks[name] = self.tasks[-1]
        return vendor

    async def restart_vendor(self, name: str) -> VendorAgent:
        """Stop a vendor without redeeming and start it again from its store (a crash)."""
        halted = await halt_vendor(self, name)
        return await self.reopen_vendor(name, halted.core.terms)

    async def reopen_vendor(self, name: str, terms: VendorTerms) -> VendorAgent:
        """Start a halted vendor again from its own data directory."""
        assert self.info is not None
        vendor = await VendorAgent.open(
            self.root / name, name, self.info, terms, self.mosquitto.user(name)
        )
        self.tasks.append(asyncio.create_task(vendor.run()))
        self.vendor_tasks[name] = self.tasks[-1]
        self.vendors[name] = vendor
        await asyncio.wait_for(vendor.loop.connected.wait(), 10)
        return vendor

    async def redeem(self, name: str) -> None:
        """Have a running vendor redeem everything now and wait for the broker's answers."""
        vendor = self.vendors[name]
        await vendor.loop.act(vendor.core.redeem_all)
        await wait_until(lambda: vendor.core.unredeemed_amount == 0)

    def credited(self, account: str) -> int:
        assert self.daemon is not None
        return self.daemon.service.core.totals.credited.get(account, 0)

    def debited(self, account: str) -> int:
        assert self.daemon is not None
        return self.daemon.service.core.totals.debited.get(account, 0)

    async def serving(self, vendor: str, buyer: str = "buyer3", units: int = 2) -> None:
        """Prove ``vendor`` still serves: a fresh honest buyer pays it and is acknowledged."""
        agent = await self.buyer(buyer)
        if agent.core.certified is None:
            await agent.store.close()
            token = await self.open_account(buyer, "buyer")
            agent = await self.buyer(buyer)
            await agent.run(lambda: agent.enroll(token))
            agent = await self.buyer(buyer)
        before = self.vendors[vendor].counters.amount
        result = await agent.run(lambda: agent.pay(vendor, 1, units))
        assert result.acknowledged >= units
        assert self.vendors[vendor].counters.amount == before + units

    async def broker_serving(self, vendor: str) -> None:
        """Prove the broker still serves: an honest payment at ``vendor`` gets redeemed."""
        if vendor not in self.vendors:
            await self.start_vendor(vendor)
        expected = self.credited(vendor) + self.vendors[vendor].core.unredeemed_amount + 2
        await self.serving(vendor)
        await self.redeem(vendor)
        assert self.credited(vendor) == expected


@pytest_asyncio.fixture
async def harness(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[AttackHarness]:
    """A broker daemon on a real Mosquitto; vendors and buyers are added by each test."""
    attack = AttackHarness(tmp_path, mosquitto)
    await attack.start_broker()
    try:
        yield attack
    finally:
        await attack.stop()


def vendor_key(core: BuyerCore, vendor: str, cid: bytes) -> MacKey:
    """The chain MAC key a buyer shares with ``vendor`` for commitment ``cid``."""
    agree_key = core.offers[vendor].certificate.agree_key
    return chain_mac_key(core.identity, core.account, vendor, agree_key, cid)


def send_commitment(core: BuyerCore, vendor: str, commitment: Commitment, now: float) -> bytes:
    """Sign any commitment with the buyer's key and queue it to ``vendor``; returns its id."""
    signed, cid = sign_commitment(core.identity, commitment)
    core.send(
        vendor, Commit(signed), now, auth=Auth.CHAIN, key=vendor_key(core, vendor, cid), ref=cid
    )
    return cid


async def commit_as(  # noqa: PLR0913 - who signs, who sends, what, to whom
    attacker: Rogue,
    signer: AgentKeys,
    sender: Endpoint[object],
    vendor_agree_key: bytes,
    commitment: Commitment,
    now: float,
) -> bytes:
    """Sign ``commitment`` with ``signer``; ``sender`` seals and the attacker publishes it."""
    signed, cid = sign_commitment(signer, commitment)
    vendor = commitment.vendor
    key = chain_mac_key(sender.identity, sender.account, vendor, vendor_agree_key, cid)
    sender.send(vendor, Commit(signed), now, auth=Auth.CHAIN, key=key, ref=cid)
    sender.send(
        vendor, Payment(cid, 1, bytes(32)), now, auth=Auth.CHAIN, key=key, ref=cid
    )  # and a payment on it
    for message in sender.data_to_send():
        await attacker.publish(message.topic, message.payload)
    return cid


def inbox(recipient: str, sender: str) -> str:
    return topics.inbox(recipient, sender)
