"""A review of the vendor's scrip handling: each hole it found, closed (docs/SECURITY.md).

1. On-line, a ``deposited`` later than the vendor's timeout: the broker had credited the
   vendor and the buyer was never answered. The payment now stays pending; the late
   answer (or the buyer's retry) gets the buyer its change, and it is served once.
2. A restarted vendor waited ``redeem_retry`` before depositing what it recorded before
   the crash; it now deposits at once (and on-line payments pending count as owed).
3. Replicas of an on-line vendor, or the same payment delivered twice, each served it:
   the broker's ``deposited`` now says ``repeat``, and a repeat is answered, not served.
4. A deposit the broker refuses for good was retried forever; it is now marked refused,
   kept for the operator, and not sent again.
5. The vendor decoded each payment's scrip twice and rebuilt the scrip key's HMAC state
   per payment; both now happen once (per payment, and per buyer and period).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import protocol.scrip
import protocol.vendor_scrip
from protocol.broker_events import DepositRejected, ScripDeposited
from protocol.codec import decode_as, encode
from protocol.crypto import MacKey
from protocol.envelope import open_body, parse
from protocol.events import (
    Outgoing,
    PeerError,
    ScripAccepted,
    ScripDepositRefused,
    ScripPaymentRefused,
    ScripReceived,
    ScripRepeatAnswered,
    ScripSettled,
)
from protocol.messages import Deposited, Error, OfferItem
from protocol.vendor import VendorCore, VendorTerms
from protocol.vendor_scrip import UNREACHABLE, ScripRecord
from tests.support.scrip_mint import deliver, mint_scrip, take_off_the_wire
from tests.support.world import World, events_of, make_world, seeded_identity

SHOP = "shop"


def terms(*, online: bool) -> VendorTerms:
    return VendorTerms(
        max_jump=100,
        items=(OfferItem("article", 5),),
        scrip=True,
        scrip_online=online,
        redeem_retry=60.0,  # a restored record waiting this long is the hole (2)
    )


def world_with(*, online: bool) -> World:
    world = make_world(vendors=0, buyers=1)
    world.enroll_vendor(SHOP, terms(online=online))
    return world


def another_process(world: World) -> VendorCore:
    """The same vendor in another process: same keys and certificate, nothing stored."""
    first = world.vendors[SHOP]
    core = VendorCore(SHOP, seeded_identity(SHOP), world.broker.info, first.terms)
    core.restore_certificate(first.certificate, world.now)
    return core


def held_payment(world: World, price: int) -> tuple[ScripReceived, Outgoing]:
    """Scrip minted, and the buyer's payment of ``price`` taken off the wire."""
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    world.buyers["buyer1"].pay_scrip(SHOP, price, world.now)
    (payment,) = take_off_the_wire(world, "buyer1", "scrip-pay")
    return minted, payment


def served(world: World) -> list[ScripAccepted]:
    return events_of(world, SHOP, ScripAccepted)


def settled(world: World) -> list[ScripSettled]:
    return events_of(world, "buyer1", ScripSettled)


# --- 1. a late ``deposited`` -------------------------------------------------------------------


def test_online_a_deposited_after_the_timeout_still_answers_and_serves_once() -> None:
    world = world_with(online=True)
    minted, payment = held_payment(world, 30)
    deliver(world, payment)
    (late,) = take_off_the_wire(world, SHOP, "deposit")  # slow on its way to the broker
    world.now += 5  # the vendor's timeout
    world.vendors[SHOP].handle_timer(world.now)
    (again,) = take_off_the_wire(world, SHOP, "deposit")  # it asks again: lost too
    world.pump()
    errors = events_of(world, "buyer1", PeerError)
    assert [(e.code, e.detail) for e in errors] == [("scrip", UNREACHABLE)]
    assert minted.serial in world.buyers["buyer1"].scrip_pending  # retryable: kept

    deliver(world, late)  # the broker credits the vendor after the timeout ...
    world.pump()
    assert len(events_of(world, world.broker.account, ScripDeposited)) == 1
    assert len(served(world)) == 1  # ... and the buyer is served and answered, once
    (paid,) = settled(world)
    assert (paid.serial, paid.change_value) == (minted.serial, 70)
    assert not events_of(world, "buyer1", ScripPaymentRefused)

    deliver(world, again)  # the second deposit: a repeat, nothing more
    world.pump()
    assert len(served(world)) == 1
    assert len(settled(world)) == 1
    assert world.broker.totals.credited[SHOP] == 30


def test_online_the_buyers_retry_after_the_timeout_gets_the_real_answer() -> None:
    world = world_with(online=True)
    _, payment = held_payment(world, 30)
    deliver(world, payment)
    take_off_the_wire(world, SHOP, "deposit")
    world.now += 5
    world.vendors[SHOP].handle_timer(world.now)
    take_off_the_wire(world, SHOP, "deposit")
    world.pump()

    world.buyers["buyer1"].resume_scrip(world.now)  # the buyer's retry; the broker is back
    world.pump()
    (paid,) = settled(world)
    assert paid.change_value == 70
    assert len(served(world)) == 1
    assert not world.vendors[SHOP].scrip_online_pending


def test_online_a_pending_payment_is_dropped_only_at_the_serials_deadline() -> None:
    world = world_with(online=True)
    minted, payment = held_payment(world, 30)
    deliver(world, payment)
    vendor = world.vendors[SHOP]
    for _ in range(4):  # the broker never answers: asked again with backoff, kept
        take_off_the_wire(world, SHOP, "deposit")
        due = vendor.get_timer()
        assert due is not None
        world.now = due
        vendor.handle_timer(world.now)
    assert vendor.scrip_online_pending == 1
    world.now = minted.expires / 1000 + vendor.terms.scrip_deposit_grace + 1
    vendor.handle_timer(world.now)
    assert vendor.scrip_online_pending == 0  # the broker takes no deposit now


# --- 2. a restarted vendor deposits at once ----------------------------------------------------


def restored(world: World, records: list[ScripAccepted]) -> VendorCore:
    """The shop restarted from its store: the records as the store kept them."""
    world.now += 1
    core = another_process(world)
    for r in records:
        core.restore_scrip(
            ScripRecord(r.serial, r.generation, r.buyer, r.item, r.price, r.spent, r.change,
                        r.expires, r.confirmed),
            world.now,
        )  # fmt: skip
    world.net.attach(core, world.now)
    world.vendors[SHOP] = core
    return core


def test_a_restarted_vendor_deposits_its_unconfirmed_records_at_once() -> None:
    world = world_with(online=False)
    minted, payment = held_payment(world, 30)
    deliver(world, payment)
    world.pump()
    world.now += world.vendors[SHOP].terms.redeem_interval
    world.vendors[SHOP].handle_timer(world.now)
    assert take_off_the_wire(world, SHOP, "deposit")  # sent, and the process died
    again = restored(world, served(world))
    assert again.scrip_awaiting_deposit == 1

    due = again.get_timer()
    assert due is not None
    assert due <= world.now  # not ``redeem_retry`` (60 s) later
    again.handle_timer(world.now)
    world.pump()
    record = world.broker.scrip.records[minted.serial]
    assert (record.generation, record.credited) == (0, 30)
    assert again.scrip_awaiting_deposit == 0


def test_online_payments_pending_count_as_owed_and_are_deposited_at_stop() -> None:
    world = world_with(online=True)
    _, payment = held_payment(world, 30)
    deliver(world, payment)
    vendor = world.vendors[SHOP]
    take_off_the_wire(world, SHOP, "deposit")
    assert vendor.scrip_online_pending == 1  # the daemon's stop waits for it
    assert vendor.deposit_all(world.now) == 1
    world.pump()
    assert len(served(world)) == 1
    assert vendor.scrip_online_pending == 0


# --- 3. one payment, one service ---------------------------------------------------------------


def test_online_replicas_given_the_same_payment_serve_it_once() -> None:
    world = world_with(online=True)
    minted, payment = held_payment(world, 30)
    replica = another_process(world)  # shares the subscription: gets the payment too
    assert not replica.receive(payment.topic, payment.payload, world.now)
    (replica_deposit,) = replica.data_to_send()
    deliver(world, replica_deposit)  # the replica deposits first and is credited
    answers = world.broker.data_to_send()
    (first,) = [a for a in answers if parse(a.payload).header.type == "deposited"]
    credited = open_body(parse(first.payload))
    assert isinstance(credited, Deposited)
    assert not credited.repeat
    events = replica.receive(first.topic, first.payload, world.now)
    assert [type(e) for e in events if isinstance(e, ScripAccepted)] == [ScripAccepted]
    for out in replica.data_to_send():  # its answer with the change
        deliver(world, out)
    (paid,) = settled(world)
    assert paid.change_value == 70

    world.now += 1
    deliver(world, payment)  # the other process deposits the same payment: a repeat
    world.pump()
    assert not served(world)  # not served again
    repeat = events_of(world, SHOP, ScripRepeatAnswered)
    assert repeat == [ScripRepeatAnswered(minted.serial, 0, "buyer1", "")]
    assert settled(world) == [paid]  # answered (a payment already settled: nothing new)
    assert world.broker.totals.credited[SHOP] == 30
    assert len(events_of(world, world.broker.account, ScripDeposited)) == 1


def test_a_deposited_that_repeats_encodes_as_before_unless_it_says_so() -> None:
    plain = Deposited(1, 0, 30, 70, b"change")
    assert len(decode_as_list(encode(plain))) == 6  # the bytes of earlier versions
    repeat = Deposited(1, 0, 30, 70, b"change", repeat=True)
    assert decode_as(Deposited, encode(repeat)) == repeat
    assert decode_as(Deposited, encode(plain)) == plain


def decode_as_list(data: bytes) -> list[Any]:
    decoded: list[Any] = msgspec.msgpack.decode(data)
    return decoded


# --- 4. a refusal for good ---------------------------------------------------------------------


def test_a_deposit_the_broker_refuses_for_good_is_kept_and_not_sent_again() -> None:
    world = world_with(online=False)
    minted, payment = held_payment(world, 30)
    deliver(world, payment)
    world.pump()
    first = world.vendors[SHOP]
    first.deposit_all(world.now)
    world.pump()  # generation 0 credited at 30
    # A copy of the vendor restored from before that payment takes generation 0 again,
    # at another price (a buyer replaying an old wallet): the broker refuses that deposit.
    again = restored(world, [])
    buyer = world.buyers["buyer1"]
    buyer.restore_scrip(minted.scrip, minted.secret)
    buyer.pay_scrip(SHOP, 40, world.now)
    world.pump()
    assert again.scrip_awaiting_deposit == 1
    again.deposit_all(world.now)
    world.pump()
    (rejected,) = events_of(world, world.broker.account, DepositRejected)
    assert rejected.reason == "generation 0 already deposited"
    (refusal,) = events_of(world, SHOP, ScripDepositRefused)
    assert (refusal.serial, refusal.generation) == (minted.serial, 0)
    assert refusal.detail.endswith("generation 0 already deposited")
    record = again.spent_scrip[minted.serial]
    assert record.refused  # kept for the operator
    assert again.scrip_awaiting_deposit == 0
    assert again.scrip_deposits_refused == 1

    for _ in range(3):  # never sent again, however long it runs
        world.now += again.terms.redeem_retry_max + 1
        again.handle_timer(world.now)
        assert not take_off_the_wire(world, SHOP, "deposit")


def test_a_refusal_that_is_not_definitive_is_retried() -> None:
    world = world_with(online=False)
    _, payment = held_payment(world, 30)
    deliver(world, payment)
    world.pump()
    vendor = world.vendors[SHOP]
    vendor.deposit_all(world.now)
    (sent,) = take_off_the_wire(world, SHOP, "deposit")
    events = vendor.scrip_refused(parse(sent.payload).header.corr, Error("busy", "later"), 0.0)
    assert events == []
    assert vendor.scrip_awaiting_deposit == 1


# --- 5. the vendor's CPU per payment -----------------------------------------------------------


def recorder(name: str, original: Callable[..., Any], calls: list[str]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return original(*args, **kwargs)

    return counted


def test_a_payment_decodes_its_scrip_once_and_derives_nothing_for_a_known_buyer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = world_with(online=False)
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer, vendor = world.buyers["buyer1"], world.vendors[SHOP]
    buyer.pay_scrip(SHOP, 10, world.now)
    world.pump()  # the first payment derives the buyer's keys
    buyer.pay_scrip(SHOP, 10, world.now)
    (payment,) = buyer.data_to_send()

    calls: list[str] = []
    watched = (
        (protocol.vendor_scrip, "decode_scrip"),
        (protocol.scrip, "decode_scrip"),  # what ``verify_scrip`` decodes with
        (protocol.vendor_scrip, "pair_key"),
        (protocol.vendor_scrip, "scrip_key"),
        (protocol.vendor_scrip, "customer_master"),
        (protocol.vendor_scrip, "customer_secret"),
    )
    for module, name in watched:
        monkeypatch.setattr(module, name, recorder(name, getattr(module, name), calls))
    keys_made: list[bytes] = []
    original_init = MacKey.__init__

    def made(self: MacKey, key: bytes) -> None:
        keys_made.append(key)
        original_init(self, key)

    monkeypatch.setattr(MacKey, "__init__", made)
    events = vendor.receive(payment.topic, payment.payload, world.now)
    assert [type(e) for e in events] == [ScripAccepted]
    assert calls == ["decode_scrip"]  # once; no key derived again
    assert keys_made == []  # the scrip key's and the buyer's HMAC states are kept
    assert vendor.spent_scrip[minted.serial].generation == 1


def test_a_rekey_drops_the_keys_derived_from_the_old_identity() -> None:
    world = world_with(online=False)
    mint_scrip(world, "buyer1", SHOP, 100)
    buyer, vendor = world.buyers["buyer1"], world.vendors[SHOP]
    buyer.pay_scrip(SHOP, 10, world.now)
    world.pump()
    cached = dict(vendor._buyer_keys)
    assert len(cached) == 1
    vendor.identity = seeded_identity("another key")  # what a rekey does
    buyer.pay_scrip(SHOP, 10, world.now)
    world.pump()
    assert len(served(world)) == 1  # the buyer's secret is the old key's: refused
    (keys,) = vendor._buyer_keys.values()
    (old,) = cached.values()
    assert keys is not old
