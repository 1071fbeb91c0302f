"""Test support: the broker's part of scrip, played from the keys, until its core mints.

``minted_reply`` builds a ``Minted`` exactly as docs/SCHEMES.md 3.8 says: the scrip tagged
under the vendor's scrip key of the period and the customer secret wrapped for the buyer,
both derived from the broker's pair keys with the vendor and the buyer. ``mint_scrip`` runs
a mint in the in-memory world: the buyer's real ``scrip?`` goes out and is taken off the
wire, and the reply goes to the buyer sealed by the broker core's own ``send``.

Once the broker core mints, ``mint_scrip`` becomes ``buyer.mint(...)`` and a pump, and
``deposited_reply`` the broker's own answer to a ``deposit``.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterator

from protocol import topics
from protocol.broker import BrokerCore
from protocol.crypto import AgentKeys, pair_key
from protocol.envelope import Auth, parse
from protocol.events import Outgoing, ScripReceived
from protocol.messages import Certificate, Deposited, Minted, Scrip
from protocol.scrip import (
    PERIOD_MS,
    customer_master,
    customer_secret,
    period_of,
    scrip_key,
    tag_scrip,
    wrap_customer_secret,
)
from tests.support.world import World, events_of

LIFETIME_MS = PERIOD_MS
_serials: weakref.WeakKeyDictionary[BrokerCore, Iterator[int]] = weakref.WeakKeyDictionary()


def next_serial(broker: BrokerCore) -> int:
    """The broker's next scrip serial: 1, 2, 3, ... over all it mints."""
    return next(_serials.setdefault(broker, itertools.count(1)))


def vendor_pair_key(broker: BrokerCore, vendor: str, vendor_agree_key: bytes) -> bytes:
    """PK(v, s): the broker's side of its pair key with the vendor."""
    return pair_key(broker.identity, broker.account, vendor_agree_key, vendor)


def minted_reply(  # noqa: PLR0913 - what a mint depends on
    broker: AgentKeys,
    broker_id: str,
    vendor: Certificate,
    buyer: str,
    buyer_agree_key: bytes,
    value: int,
    request: bytes,
    now: float,
    serial: int,
    properties: tuple[str, ...] = (),
) -> Minted:
    """The ``Minted`` the broker sends for ``request`` (3.8, steps 4 and 5)."""
    now_ms = int(now * 1000)
    period = period_of(now_ms)
    shared = pair_key(broker, broker_id, vendor.agree_key, vendor.subject)
    scrip = Scrip(
        vendor.subject,
        vendor.serial,
        period,
        serial,
        0,
        buyer,
        value,
        vendor.currency,
        min(now_ms + LIFETIME_MS, vendor.not_after),
        list(properties),
    )
    tagged = tag_scrip(scrip, scrip_key(shared, vendor.subject, period))
    secret = customer_secret(customer_master(shared, vendor.subject, period), buyer)
    buyer_pair = pair_key(broker, broker_id, buyer_agree_key, buyer)
    wrapped = wrap_customer_secret(buyer_pair, vendor.subject, vendor.serial, period, secret)
    return Minted(request, tagged, wrapped)


def take_off_the_wire(world: World, account: str, kind: str) -> list[Outgoing]:
    """Drain ``account``'s outbox: messages of type ``kind`` are returned, the rest delivered."""
    taken = []
    for out in world.net.cores[account].data_to_send():
        if parse(out.payload).header.type == kind:
            taken.append(out)
            continue
        parts = topics.split(out.topic)
        assert parts is not None
        world.net.inject(parts[1], out.topic, out.payload, world.now)
    return taken


def mint_scrip(
    world: World, buyer: str, vendor: str, value: int, *, properties: tuple[str, ...] = ()
) -> ScripReceived:
    """``buyer`` buys scrip worth ``value`` at ``vendor``; the broker's part is played."""
    core, seller = world.buyers[buyer], world.vendors[vendor]
    assert seller.certified is not None
    request = core.mint(vendor, value, world.now)
    (asked,) = take_off_the_wire(world, buyer, "scrip?")
    assert parse(asked.payload).header.corr == request
    broker = world.broker
    reply = minted_reply(
        broker.identity,
        broker.account,
        seller.certified,
        buyer,
        core.identity.agree_key,
        value,
        request,
        world.now,
        next_serial(broker),
        properties,
    )
    send_as_broker(world, buyer, core.identity, reply, request)
    return events_of(world, buyer, ScripReceived)[-1]


def send_as_broker(
    world: World, to: str, keys: AgentKeys, body: Minted | Deposited, corr: bytes
) -> None:
    """Seal ``body`` from the broker to ``to`` under their pair key, and deliver it."""
    broker = world.broker
    key = broker.pair_key_with(to, keys.agree_key)
    broker.send(to, body, world.now, auth=Auth.PAIR, key=key, corr=corr)
    world.pump()
