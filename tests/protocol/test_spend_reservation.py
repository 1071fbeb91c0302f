"""The buyer's spend reservation: durable before any payword beyond it leaves, never reused.

A shell is modelled as the contract says: it persists each event the core returns, then
publishes what the core queued. ``Wallet`` is that shell's durable state (one number per
chain), and every payment that leaves is checked against it on the way out.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.buyer import DEFAULT_RESERVE_AHEAD, BuyerCore
from protocol.envelope import open_body, parse
from protocol.errors import LocalProtocolError
from protocol.events import (
    BuyerEvent,
    PaymentAccepted,
    PaywordSpent,
    ReceiptReceived,
    SpendReserved,
)
from protocol.messages import Payment
from tests.support.world import (
    World,
    default_terms,
    events_of,
    make_world,
    seeded_identity,
)

LENGTH = 1_000


@dataclass
class Wallet:
    """What the shell made durable (the chain's reservation) and every index that left."""

    world: World
    buyer: BuyerCore
    cid: bytes = b""
    reserved: int = 0
    left: list[int] = field(default_factory=list)
    writes: int = 0

    def persist(self, event: BuyerEvent) -> None:
        match event:
            case PaywordSpent(reserved=int(upto)):
                self.reserved = max(self.reserved, upto)
                self.writes += 1
            case SpendReserved(upto=upto):
                self.reserved = upto
                self.writes += 1
            case _:
                pass

    def pay(self, units: int, item: str = "", *, crash: bool = False) -> PaywordSpent:
        """Pay, persist, then publish; ``crash``: the process dies before publishing."""
        event = self.buyer.pay(self.cid, units, self.world.now, item)
        self.persist(event)
        if not crash:
            self.publish()
        return event

    def publish(self) -> None:
        for out in self.buyer.data_to_send():
            body = open_body(parse(out.payload))
            if isinstance(body, Payment):
                assert body.index <= self.reserved, "a payword left ahead of its reservation"
                self.left.append(body.index)
            self.world.net.inject("vendor1", out.topic, out.payload, self.world.now)
        self.world.pump()


def wallet_with_chain(world: World, reserve_ahead: int, length: int = LENGTH) -> Wallet:
    buyer = world.buyers["buyer1"]
    buyer.reserve_ahead = reserve_ahead
    opened = buyer.open_channel("vendor1", length, world.now)
    world.pump()
    return Wallet(world, buyer, opened.commitment_id)


def restarted(wallet: Wallet, advance: float = 1.0) -> Wallet:
    """A new buyer process: the same keys and certificate, the chain restored from disk."""
    world, old = wallet.world, wallet.buyer
    world.now += advance
    buyer = BuyerCore("buyer1", seeded_identity("buyer1"), world.broker.info)
    buyer.restore_certificate(old.certificate, world.now)
    world.net.attach(buyer, world.now)  # reads the vendor's retained offer
    channel = old.channels[wallet.cid]
    buyer.restore_channel(
        "vendor1", channel.seed, channel.commitment, channel.chain.length, wallet.reserved
    )
    buyer.resume(wallet.cid, world.now)
    world.pump()
    return Wallet(world, buyer, wallet.cid, wallet.reserved)


def test_a_payment_past_the_reservation_carries_the_new_one_and_payments_within_carry_none(
    world: World,
) -> None:
    wallet = wallet_with_chain(world, reserve_ahead=64)
    assert wallet.pay(5) == PaywordSpent(wallet.cid, 5, 64)
    assert [wallet.pay(10).reserved for _ in range(5)] == [None] * 5  # up to 55
    assert wallet.pay(9) == PaywordSpent(wallet.cid, 64, None)  # exactly the reservation
    assert wallet.pay(1) == PaywordSpent(wallet.cid, 65, 128)  # 64 beyond what was spent
    assert wallet.pay(100) == PaywordSpent(wallet.cid, 165, 165)  # a payment larger than k
    assert wallet.writes == 3
    assert world.vendors["vendor1"].chains[wallet.cid].index == 165


def test_the_reservation_stops_at_the_end_of_the_chain(world: World) -> None:
    wallet = wallet_with_chain(world, reserve_ahead=64)
    wallet.pay(LENGTH - 10)
    assert wallet.pay(1) == PaywordSpent(wallet.cid, LENGTH - 9, LENGTH)
    assert wallet.pay(9).reserved is None
    with pytest.raises(LocalProtocolError, match="0 of 1000 units left"):
        wallet.pay(1)


@pytest.mark.parametrize("reserve_ahead", [0, 1])
def test_no_reservation_ahead_persists_every_payment(world: World, reserve_ahead: int) -> None:
    wallet = wallet_with_chain(world, reserve_ahead)
    for units in (1, 3, 1, 50, 2):
        event = wallet.pay(units)
        assert event.reserved == event.index  # the payment itself, as before reservations
    assert wallet.writes == 5


def test_a_session_hands_back_what_it_reserved_and_did_not_pay(world: World) -> None:
    wallet = wallet_with_chain(world, reserve_ahead=64)
    wallet.pay(10)
    assert wallet.reserved == 64
    released = wallet.buyer.release(wallet.cid)
    assert released == SpendReserved(wallet.cid, 10)
    wallet.persist(released)
    assert wallet.reserved == 10
    assert wallet.pay(1) == PaywordSpent(wallet.cid, 11, 74)  # the next session reserves anew


def test_a_restart_resumes_above_the_reservation_and_reveals_no_payword_for_a_new_payment(
    world: World,
) -> None:
    wallet = wallet_with_chain(world, reserve_ahead=64)
    for _ in range(6):
        wallet.pay(5)  # up to 30, delivered
    wallet.pay(10, crash=True)  # up to 40: the process dies before it publishes
    assert (wallet.reserved, world.vendors["vendor1"].chains[wallet.cid].index) == (64, 30)

    again = restarted(wallet)
    channel = again.buyer.channels[again.cid]
    assert (channel.spent, channel.acknowledged) == (64, 30)  # the vendor's receipt
    event = again.pay(5, "article")
    assert event.index == 69  # above everything that may have left before the crash
    accepted = events_of(world, "vendor1", PaymentAccepted)
    assert [(e.index, e.item) for e in accepted[-1:]] == [(69, "article")]
    assert accepted[-1].units == 39  # the reserved units are paid with it, once
    assert sum(e.units for e in accepted) == 69  # no unit credited twice
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 69


def test_a_restored_chain_steps_up_from_the_vendor_so_no_jump_is_too_large() -> None:
    world = make_world(vendors=0, buyers=0)
    terms = default_terms()
    world.enroll_vendor("vendor1", replace(terms, max_jump=10))  # less than a crash skips
    world.enroll_buyer("buyer1")
    wallet = wallet_with_chain(world, reserve_ahead=64)
    wallet.pay(3)
    again = restarted(wallet)
    again.pay(4, "minute")
    assert again.left == [8, 18, 28, 38, 48, 58, 68]  # the remainder first, as 11.6 says
    accepted = events_of(world, "vendor1", PaymentAccepted)
    assert [(e.index, e.item) for e in accepted[-2:]] == [(58, ""), (68, "minute")]


@settings(max_examples=100, deadline=None)
@given(
    reserve_ahead=st.integers(0, 100),
    plan=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    crash_at=st.integers(0, 30),
    lost=st.integers(0, 3),
    seed=st.integers(0, 2**32),
)
def test_any_schedule_of_payments_crashes_and_restarts_never_spends_a_unit_twice(
    reserve_ahead: int, plan: list[int], crash_at: int, lost: int, seed: int
) -> None:
    world = make_world()
    wallet = wallet_with_chain(world, reserve_ahead, length=10 * LENGTH)
    rng = random.Random(seed)
    crash_at = min(crash_at, len(plan))
    for units in plan[:crash_at]:
        wallet.pay(units)
        assert wallet.reserved - wallet.buyer.channels[wallet.cid].spent <= reserve_ahead
    for units in plan[crash_at : crash_at + lost]:
        wallet.pay(units, crash=True)  # paid, never published: lost with the process
    spent_before = wallet.buyer.channels[wallet.cid].spent
    assert 0 <= wallet.reserved - spent_before <= reserve_ahead  # what the crash costs
    if rng.random() < 0.5:
        wallet.persist(wallet.buyer.release(wallet.cid))  # a clean end hands it back
    again = restarted(wallet)
    reserved = again.reserved
    for units in plan[crash_at + lost :]:
        event = again.pay(units)
        assert event.index > reserved  # no new payment reuses a payword that may have left
    vendor = world.vendors["vendor1"].chains[wallet.cid]
    if plan[crash_at + lost :]:
        assert vendor.index == again.buyer.channels[wallet.cid].spent
    else:
        assert vendor.index <= reserved  # it holds only what left before the crash
    credited = sum(e.units for e in events_of(world, "vendor1", PaymentAccepted))
    assert credited == vendor.index  # every unit the vendor holds, credited once


def test_the_core_refuses_a_negative_reserve_ahead(world: World) -> None:
    assert DEFAULT_RESERVE_AHEAD == 64
    with pytest.raises(LocalProtocolError, match="reserve_ahead"):
        BuyerCore("buyer1", seeded_identity("buyer1"), world.broker.info, reserve_ahead=-1)
