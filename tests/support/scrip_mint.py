"""Test support: scrip minted by the in-memory broker core, and the wire taken in hand.

``mint_scrip`` is the buyer core's own ``scrip?`` answered by the broker core. The rest
lets a test hold a message back (a lost answer, a deposit not yet delivered) or seal a
message as the broker, for what a broker that misbehaves would send.
"""

from __future__ import annotations

import dataclasses

from protocol import topics
from protocol.broker import BrokerCore
from protocol.crypto import AgentKeys, pair_key
from protocol.envelope import Auth, parse
from protocol.events import Outgoing, ScripReceived
from protocol.messages import Body
from tests.support.world import World, events_of


def vendor_pair_key(broker: BrokerCore, vendor: str, vendor_agree_key: bytes) -> bytes:
    """PK(v, s): the broker's side of its pair key with the vendor."""
    return pair_key(broker.identity, broker.account, vendor_agree_key, vendor)


def take_off_the_wire(world: World, account: str, kind: str) -> list[Outgoing]:
    """Drain ``account``'s outbox: messages of type ``kind`` are returned, the rest delivered."""
    taken = []
    for out in world.net.cores[account].data_to_send():
        if parse(out.payload).header.type == kind:
            taken.append(out)
            continue
        deliver(world, out)
    return taken


def deliver(world: World, out: Outgoing) -> None:
    """Hand one message held back to its recipient, as the network would have."""
    parts = topics.split(out.topic)
    assert parts is not None
    world.net.inject(parts[1], out.topic, out.payload, world.now)


def mint_scrip(
    world: World, buyer: str, vendor: str, value: int, *, properties: tuple[str, ...] = ()
) -> ScripReceived:
    """``buyer`` buys scrip worth ``value`` at ``vendor`` from the broker core.

    ``properties`` are the broker's policy for this one mint (3.8, step 4).
    """
    broker = world.broker
    policy = broker.policy
    if properties:
        broker.policy = dataclasses.replace(policy, scrip_properties=properties)
    try:
        world.buyers[buyer].mint(vendor, value, world.now)
        world.pump()
    finally:
        broker.policy = policy
    received = events_of(world, buyer, ScripReceived)[-1]
    assert (received.vendor, received.value, received.generation) == (vendor, value, 0)
    return received


def send_as_broker(world: World, to: str, keys: AgentKeys, body: Body, corr: bytes) -> None:
    """Seal ``body`` from the broker to ``to`` under their pair key, and deliver it."""
    broker = world.broker
    key = broker.pair_key_with(to, keys.agree_key)
    broker.send(to, body, world.now, auth=Auth.PAIR, key=key, corr=corr)
    world.pump()
