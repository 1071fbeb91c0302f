"""PayWord on-line above a value: small chains taken at once, large ones on the broker's word."""

from __future__ import annotations

import pytest

from protocol.broker_events import CommitmentRegistered
from protocol.errors import LocalProtocolError
from protocol.events import PeerError, ReceiptReceived
from protocol.vendor import VendorTerms
from tests.support.scrip_mint import deliver
from tests.support.world import World, events_of, make_world


def kiosk_world(online_above: int) -> World:
    world = make_world(vendors=0, buyers=0)
    terms = VendorTerms(
        unit_value=2, max_length=1000, max_jump=50, online=True, online_above=online_above
    )
    world.enroll_vendor("kiosk", terms)
    world.enroll_buyer("alice", credit_limit=10_000)
    return world


def sent_to_broker(world: World) -> list[str]:
    """The topics of what the vendor sent the broker; everything it sent is delivered."""
    sent = world.vendors["kiosk"].data_to_send()
    for out in sent:
        deliver(world, out)
    return [out.topic for out in sent if out.topic.endswith("/in/broker/kiosk")]


def commit(world: World, length: int) -> bytes:
    """alice commits a chain of ``length`` (worth ``2 * length``) and it reaches the vendor."""
    opened = world.buyers["alice"].open_channel("kiosk", length, world.now)
    for out in world.buyers["alice"].data_to_send():
        world.net.inject("kiosk", out.topic, out.payload, world.now)
    return opened.commitment_id


def test_a_chain_worth_at_most_the_threshold_is_taken_without_the_broker() -> None:
    world = kiosk_world(online_above=100)
    cid = commit(world, 50)  # worth exactly 100
    assert sent_to_broker(world) == []
    assert cid in world.vendors["kiosk"].chains
    world.pump()
    assert events_of(world, "alice", ReceiptReceived)[-1].commitment_id == cid
    assert not world.broker.totals.reserved["alice"]


def test_a_chain_worth_more_waits_for_its_registration() -> None:
    world = kiosk_world(online_above=100)
    cid = commit(world, 51)  # worth 102
    assert len(sent_to_broker(world)) == 1
    assert cid not in world.vendors["kiosk"].chains  # not before the broker's word
    world.pump()
    assert cid in world.vendors["kiosk"].chains
    events = world.net.ledger_events("broker")
    registered = [e for e in events if isinstance(e, CommitmentRegistered)]
    assert [e.commitment_id for e in registered] == [cid]
    assert world.broker.totals.reserved["alice"] == 102


def test_zero_registers_every_chain_and_a_negative_threshold_is_refused() -> None:
    world = kiosk_world(online_above=0)
    commit(world, 1)
    assert len(sent_to_broker(world)) == 1
    with pytest.raises(LocalProtocolError, match="online_above"):
        VendorTerms(online=True, online_above=-1)


def test_chains_waiting_for_registration_count_against_the_credit_limit() -> None:
    world = make_world(vendors=0, buyers=0)
    terms = VendorTerms(unit_value=2, max_length=1000, max_jump=50, online=True, online_above=100)
    world.enroll_vendor("kiosk", terms)
    world.enroll_buyer("alice", credit_limit=2000)
    vendor = world.vendors["kiosk"]
    big = commit(world, 1000)  # worth the whole limit: waits for the broker
    held = [out for out in vendor.data_to_send() if out.topic.endswith("/in/broker/kiosk")]
    assert len(held) == 1
    assert vendor.exposure("alice", world.now) == 2000
    commit(world, 50)  # worth 100, small enough for off-line, but the limit is taken
    world.pump()
    refusals = events_of(world, "alice", PeerError)
    assert [(e.code, "credit limit" in e.detail) for e in refusals] == [("commitment", True)]
    for out in held:  # the registration goes through; the big chain alone is within L
        deliver(world, out)
    world.pump()
    assert big in vendor.chains
    assert vendor.exposure("alice", world.now) == 2000
