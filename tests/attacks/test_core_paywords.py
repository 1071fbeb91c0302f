"""Paywords and envelopes the vendor core refuses: another chain's, out of order, past the
chain's end or the jump cap, replayed, stale or moved; and redemptions beyond what was paid."""

from __future__ import annotations

from protocol import topics
from protocol.broker_events import PaywordsRedeemed, RedemptionRejected
from protocol.chain import HashChain
from protocol.envelope import Auth
from protocol.errors import AuthenticationError, PaymentError, ReplayError, StaleMessageError
from protocol.events import PaymentAccepted, PeerError
from protocol.messages import Redeem
from tests.attacks.cores import open_paid_channel, rejected_with, send_payment, vendor_total
from tests.support.world import World, events_of, make_world


def test_payword_from_another_chain_is_rejected(world: World) -> None:
    first = open_paid_channel(world, units=5)
    second = open_paid_channel(world, units=0)
    stolen = world.buyers["buyer1"].channels[first].chain.word(6)
    events = send_payment(world, second, 6, stolen)
    assert rejected_with(events, PaymentError)
    assert vendor_total(world) == 5


def test_wrong_root_payword_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=0)
    unrelated = HashChain(b"\x07" * 32, 100)
    events = send_payment(world, cid, 1, unrelated.word(1))
    assert rejected_with(events, PaymentError)
    assert vendor_total(world) == 0


def test_non_monotonic_index_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=10)
    chain = world.buyers["buyer1"].channels[cid].chain
    events = send_payment(world, cid, 9, chain.word(9))
    assert rejected_with(events, PaymentError)
    assert vendor_total(world) == 10


def test_same_index_with_a_different_payword_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=10)
    events = send_payment(world, cid, 10, b"\x01" * 32)
    assert rejected_with(events, PaymentError)
    # The exact same payword again is a harmless duplicate: re-acknowledged, not re-credited.
    chain = world.buyers["buyer1"].channels[cid].chain
    assert not send_payment(world, cid, 10, chain.word(10))
    assert vendor_total(world) == 10


def test_index_beyond_the_chain_length_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=0, length=20)
    events = send_payment(world, cid, 21, b"\x02" * 32)
    assert rejected_with(events, PaymentError)


def test_jump_above_the_vendor_maximum_is_rejected_before_hashing(world: World) -> None:
    cid = open_paid_channel(world, units=0, length=10_000)
    chain = world.buyers["buyer1"].channels[cid].chain
    max_jump = world.vendors["vendor1"].terms.max_jump
    events = send_payment(world, cid, max_jump + 1, chain.word(max_jump + 1))
    assert rejected_with(events, PaymentError)
    assert vendor_total(world) == 0


def test_replayed_envelope_is_rejected(world: World) -> None:
    buyer = world.buyers["buyer1"]
    cid = open_paid_channel(world, units=0)
    buyer.pay(cid, 3, world.now)
    (out,) = buyer.data_to_send()
    first = world.net.inject("vendor1", out.topic, out.payload, world.now)
    assert [type(e) for e in first] == [PaymentAccepted]
    events = world.net.inject("vendor1", out.topic, out.payload, world.now)
    assert rejected_with(list(events), ReplayError)
    assert vendor_total(world) == 3


def test_stale_envelope_is_rejected(world: World) -> None:
    buyer = world.buyers["buyer1"]
    cid = open_paid_channel(world, units=0)
    buyer.pay(cid, 3, world.now - 3600)
    (out,) = buyer.data_to_send()
    events = world.net.inject("vendor1", out.topic, out.payload, world.now)
    assert rejected_with(list(events), StaleMessageError)
    assert vendor_total(world) == 0


def test_envelope_moved_to_another_topic_fails_authentication() -> None:
    world = make_world(vendors=1, buyers=2)
    buyer = world.buyers["buyer1"]
    cid = buyer.open_channel("vendor1", 100, world.now).commitment_id
    world.pump()
    buyer.pay(cid, 3, world.now)
    (out,) = buyer.data_to_send()
    moved = topics.inbox("vendor1", "buyer2")
    events = world.net.inject("vendor1", moved, out.payload, world.now)
    assert rejected_with(list(events), AuthenticationError)
    assert vendor_total(world) == 0


def test_vendor_over_claiming_at_redemption_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=5)
    vendor = world.vendors["vendor1"]
    state = vendor.chains[cid]
    for index, word in ((6, state.word), (101, state.word), (50, b"\x09" * 32)):
        vendor.send(
            "broker",
            Redeem(state.verified.signed, index, word),
            world.now,
            auth=Auth.PAIR,
            key=vendor.broker_key,
        )
        world.pump()
    assert world.broker.totals.credited.get("vendor1", 0) == 0
    assert len(events_of(world, "vendor1", PeerError)) == 3
    vendor.redeem_all(world.now)
    world.pump()
    assert world.broker.totals.credited["vendor1"] == 5
    events = world.net.ledger_events("broker")
    assert len([e for e in events if isinstance(e, RedemptionRejected)]) == 3
    assert [e.amount for e in events if isinstance(e, PaywordsRedeemed)] == [5]
