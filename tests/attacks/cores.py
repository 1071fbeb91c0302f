"""The attacker against in-memory cores: a buyer sending what it likes on its own streams.

The attacks in ``test_core_*.py`` run against the protocol cores wired in memory (the
``world`` fixture of ``tests/conftest.py``): each must fail and leave the money untouched.
"""

from __future__ import annotations

from protocol.envelope import Auth
from protocol.events import MessageRejected, PaymentAccepted
from protocol.messages import Payment
from tests.support.world import World, events_of


def open_paid_channel(world: World, units: int = 5, length: int = 100) -> bytes:
    buyer = world.buyers["buyer1"]
    opened = buyer.open_channel("vendor1", length, world.now)
    world.pump()
    if units:
        buyer.pay(opened.commitment_id, units, world.now)
        world.pump()
    return opened.commitment_id


def send_payment(world: World, cid: bytes, index: int, word: bytes) -> list[object]:
    """The buyer sends an arbitrary (index, payword) on its own authenticated stream."""
    buyer = world.buyers["buyer1"]
    channel = buyer.channels[cid]
    buyer.send(
        "vendor1", Payment(cid, index, word), world.now, auth=Auth.CHAIN, key=channel.key, ref=cid
    )
    (out,) = buyer.data_to_send()
    return list(world.net.inject("vendor1", out.topic, out.payload, world.now))


def rejected_with(events: list[object], error: type[Exception]) -> bool:
    return any(isinstance(e, MessageRejected) and isinstance(e.error, error) for e in events)


def vendor_total(world: World) -> int:
    return sum(e.amount for e in events_of(world, "vendor1", PaymentAccepted))
