"""MiniPay's daily allowance in memory: grants, the vendor's rule, the day's release."""

from __future__ import annotations

import msgspec
import pytest

from protocol.allowance import DAY_MS, day_end, day_of, grant_amount, sign_grant, verify_grant
from protocol.broker import BrokerCore, BrokerPolicy
from protocol.broker_events import (
    AllowanceGranted,
    AllowanceReleased,
    CommitmentRegistered,
)
from protocol.codec import encode
from protocol.crypto import AgentKeys
from protocol.errors import AllowanceError, LocalProtocolError
from protocol.events import AllowanceCounted, AllowanceReceived, PeerError, ReceiptReceived
from protocol.messages import AllowanceGrant, Commit
from protocol.vendor import VendorCore, VendorTerms
from tests.support.world import World, events_of, make_world, seeded_identity

TERMS = VendorTerms(unit_value=1, currency="EUR", max_length=10_000, max_jump=100, allowance=True)


def allowance_world(limit: int = 10_000, allowance: int = 100, vendors: int = 4) -> World:
    world = make_world(vendors=0, buyers=0, policy=BrokerPolicy(allowance_vendors=vendors))
    world.enroll_vendor("kiosk", TERMS)
    world.enroll_buyer("alice", credit_limit=limit)
    set_allowance(world, "alice", allowance)
    return world


def set_allowance(world: World, buyer: str, amount: int) -> None:
    world.net.events["broker"].append(world.broker.set_allowance(buyer, amount, world.now))


def granted(world: World) -> list[AllowanceGranted]:
    return [e for e in world.net.events["broker"] if isinstance(e, AllowanceGranted)]


def registered(world: World) -> list[CommitmentRegistered]:
    return [e for e in world.net.events["broker"] if isinstance(e, CommitmentRegistered)]


def open_chain(world: World, length: int) -> bytes:
    opened = world.buyers["alice"].open_channel("kiosk", length, world.now)
    world.pump()
    return opened.commitment_id


def test_a_buyer_gets_one_grant_a_day_and_the_same_one_again() -> None:
    world = allowance_world(limit=10_000, allowance=100)
    buyer = world.buyers["alice"]
    buyer.query_allowance(world.now)
    world.pump()
    (received,) = events_of(world, "alice", AllowanceReceived)
    assert received.grant is not None
    assert received.grant.amount == 100  # min(100, 10_000 // 4)
    assert received.grant.day == day_of(world.now)
    (event,) = granted(world)
    assert event.reserved == 400
    assert world.broker.totals.reserved["alice"] == 400

    buyer.allowance.asked_at = None
    buyer.query_allowance(world.now + 60)
    world.pump(60)
    again = events_of(world, "alice", AllowanceReceived)[-1]
    assert again.signed == received.signed
    assert len(granted(world)) == 1
    assert world.broker.totals.reserved["alice"] == 400


def test_the_amount_shrinks_as_debits_approach_the_limit() -> None:
    assert grant_amount(100, 1_000, 0, 0, 4) == 100
    assert grant_amount(100, 1_000, 900, 0, 4) == 25
    assert grant_amount(100, 1_000, 900, 80, 4) == 5
    assert grant_amount(100, 1_000, 997, 0, 4) == 0
    assert grant_amount(100, 1_000, 1_200, 0, 4) == 0  # past the limit: never negative


def test_a_grant_of_zero_sends_every_chain_to_the_broker() -> None:
    world = allowance_world(limit=1_000, allowance=100)
    world.enroll_vendor("shop")  # an off-line vendor without grants
    buyer = world.buyers["alice"]
    spent = buyer.open_channel("shop", 997, world.now)
    world.pump()
    buyer.pay(spent.commitment_id, 997, world.now)
    world.pump()
    world.vendors["shop"].redeem_all(world.now)
    world.pump()
    assert world.broker.totals.debited["alice"] == 997

    cid = open_chain(world, 2)
    grant = events_of(world, "alice", AllowanceReceived)[-1].grant
    assert grant is not None
    assert grant.amount == 0
    assert [e.commitment_id for e in registered(world)][-1] == cid  # on-line, reserved
    assert registered(world)[-1].reserved == 2
    assert events_of(world, "kiosk", AllowanceCounted)[-1].amount == 0
    assert cid in world.vendors["kiosk"].chains


def test_a_revoked_buyer_is_refused_and_one_without_allowance_gets_none() -> None:
    world = allowance_world()
    buyer = world.buyers["alice"]
    world.net.events["broker"].extend(world.broker.revoke("alice", world.now))
    world.pump()
    buyer.query_allowance(world.now)
    world.pump()
    refusal = events_of(world, "alice", PeerError)[-1]
    assert (refusal.code, refusal.detail) == ("allowance", "certificate 2 is revoked")
    assert not granted(world)

    bob = world.enroll_buyer("bob")  # no allowance set: an empty answer, not a refusal
    bob.query_allowance(world.now)
    world.pump()
    (answer,) = events_of(world, "bob", AllowanceReceived)
    assert (answer.grant, answer.signed) == (None, b"")
    assert not events_of(world, "bob", PeerError)
    assert bob.allowance.known(world.now)
    with pytest.raises(LocalProtocolError):
        world.broker.set_allowance("kiosk", 10, world.now)  # vendors have none


def test_the_vendor_accepts_off_line_within_the_grant_and_registers_above_it() -> None:
    world = allowance_world(allowance=100)
    kiosk = world.vendors["kiosk"]
    first = open_chain(world, 60)
    second = open_chain(world, 40)  # 100: exactly the allowance
    third = open_chain(world, 10)  # above it: the broker decides
    assert [e.commitment_id for e in registered(world)] == [third]
    counted = {e.commitment_id: e.amount for e in events_of(world, "kiosk", AllowanceCounted)}
    assert counted == {first: 60, second: 40, third: 0}
    assert kiosk.allowance_counts.today("alice", world.now) == 100
    receipts = {e.commitment_id for e in events_of(world, "alice", ReceiptReceived)}
    assert receipts == {first, second, third}
    # One grant served all three commits: one round trip a day.
    assert len(events_of(world, "alice", AllowanceReceived)) == 1

    buyer = world.buyers["alice"]
    buyer.pay(first, 60, world.now)
    world.pump()
    kiosk.redeem_all(world.now)
    world.pump()
    assert world.broker.totals.debited["alice"] == 60  # off-line chains redeem as always


def test_a_vendor_without_allowance_ignores_the_flag_and_the_offer_carries_it() -> None:
    world = allowance_world()
    offer = world.buyers["alice"].offers["kiosk"].offer
    assert offer.allowance
    assert not offer.online
    assert Commit(b"x") == Commit(b"x", b"")  # no grant: the commit of before


def forged_grant(world: World, signer: AgentKeys | None = None, **changes: object) -> bytes:
    certified = world.buyers["alice"].certified
    assert certified is not None
    grant = AllowanceGrant("broker", "alice", certified.serial, day_of(world.now), 1_000, "EUR")
    grant = msgspec.structs.replace(grant, **changes)
    return sign_grant(signer or world.broker.identity, grant)


@pytest.mark.parametrize(
    "changes",
    [
        {"buyer": "bob"},
        {"serial": 99},
        {"day": day_of(1_767_225_600.0) - 1},
        {"currency": "USD"},
        {"signer": seeded_identity("mallory")},
        {"issuer": "other-broker"},
    ],
    ids=["other-buyer", "other-serial", "yesterday", "currency", "forged", "issuer"],
)
def test_a_grant_of_another_buyer_day_or_signer_sends_the_chain_on_line(
    changes: dict[str, object],
) -> None:
    world = allowance_world()
    world.enroll_buyer("bob")
    buyer, kiosk = world.buyers["alice"], world.vendors["kiosk"]
    bad = forged_grant(world, **changes)  # type: ignore[arg-type]
    buyer.allowance.answered(world.now, bad, None)  # as if the broker had sent it
    cid = open_chain(world, 10)
    assert [e.commitment_id for e in registered(world)] == [cid]
    assert kiosk.allowance_counts.today("alice", world.now) == 0


def test_a_forged_grant_does_not_verify() -> None:
    world = allowance_world()
    keys = world.vendors["kiosk"].broker_keys
    assert verify_grant(forged_grant(world), keys, "broker").amount == 1_000
    with pytest.raises(AllowanceError, match="not signed"):
        verify_grant(forged_grant(world, signer=seeded_identity("mallory")), keys, "broker")
    with pytest.raises(AllowanceError, match="does not decode"):
        verify_grant(encode(Commit(b"junk")), keys, "broker")


def test_a_chain_that_outlives_the_day_goes_on_line() -> None:
    world = allowance_world()
    buyer = world.buyers["alice"]
    world.now = day_end(day_of(world.now)) - 300  # five minutes before midnight
    opened = buyer.open_channel("kiosk", 10, world.now)
    world.pump()
    assert [e.commitment_id for e in registered(world)] == [opened.commitment_id]


def test_the_reservation_is_released_when_the_day_ends() -> None:
    world = allowance_world(allowance=100)
    open_chain(world, 30)
    broker = world.broker
    assert broker.totals.reserved["alice"] == 400
    end = day_end(day_of(world.now))
    assert broker.get_timer() == end
    world.net.events["broker"].extend(broker.handle_timer(end - 1))
    assert broker.totals.reserved["alice"] == 400
    world.net.events["broker"].extend(broker.handle_timer(end))
    (released,) = [e for e in world.net.events["broker"] if isinstance(e, AllowanceReleased)]
    assert (released.buyer, released.day, released.amount) == ("alice", day_of(world.now), 400)
    assert broker.totals.reserved["alice"] == 0
    assert broker.get_timer() is None

    world.now = end + 10  # the next day: a new grant, and the vendor's count starts over
    second = open_chain(world, 30)
    assert len(granted(world)) == 2
    assert world.vendors["kiosk"].allowance_counts.today("alice", world.now) == 30
    assert second not in [e.commitment_id for e in registered(world)]


def test_the_ledger_replayed_rebuilds_the_allowances() -> None:
    world = allowance_world(allowance=100)
    open_chain(world, 30)
    history = world.net.ledger_events("broker")
    assert [type(e) for e in history].count(AllowanceGranted) == 1

    restarted = BrokerCore(
        "broker", seeded_identity("broker"), policy=BrokerPolicy(allowance_vendors=4)
    )
    restarted.rebuild(history)
    assert restarted.allowances.settings == {"alice": 100}
    assert restarted.allowances.grants == world.broker.allowances.grants
    assert restarted.totals.reserved["alice"] == 400
    assert restarted.get_timer() == day_end(day_of(world.now))

    world.net.cores["broker"] = restarted
    buyer = world.buyers["alice"]
    buyer.allowance.answered(world.now - DAY_MS, b"", None)  # forget today's: ask again
    buyer.query_allowance(world.now)
    world.pump()
    again = events_of(world, "alice", AllowanceReceived)[-1]
    assert again.signed == world.broker.allowances.grants["alice", day_of(world.now)].grant
    assert not world.net.ledger_events("broker")  # sent again, nothing new recorded


def test_a_restarted_vendor_counts_what_its_store_kept() -> None:
    world = allowance_world(allowance=100)
    first = open_chain(world, 80)
    counted = events_of(world, "kiosk", AllowanceCounted)
    kiosk = world.vendors["kiosk"]
    restarted = VendorCore("kiosk", seeded_identity("kiosk"), world.broker.info, TERMS)
    restarted.restore_certificate(kiosk.certificate, world.now)
    restarted.restore_chain(kiosk.chains[first].verified.signed, 0, b"", 0, world.now)
    for event in counted:
        restarted.restore_allowance(event.buyer, event.day, event.amount)
    world.net.attach(restarted, world.now)
    world.net.cores["kiosk"] = restarted
    cid = open_chain(world, 30)  # 80 + 30 > 100: registered, even after the restart
    assert [e.commitment_id for e in registered(world)] == [cid]
