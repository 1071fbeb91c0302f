"""Scrip between the buyer, vendor and broker cores, in memory (docs/SCHEMES.md 3.4, 3.8, 3.9).

The broker core mints and takes the deposits. A test holds a message back to lose it or to
look at it first, and seals as the broker only what a broker that misbehaves would send.
"""

from __future__ import annotations

import copy
import dataclasses

import msgspec
import pytest

from protocol.broker_events import DepositRejected, ScripDeposited
from protocol.buyer import BuyerCore
from protocol.codec import decode_as, decode_scrip, decode_tagged_scrip, encode
from protocol.crypto import MacKey
from protocol.envelope import Auth, open_body, parse
from protocol.errors import MalformedMessageError
from protocol.events import (
    MessageRejected,
    Outgoing,
    PeerError,
    ScripAccepted,
    ScripDepositConfirmed,
    ScripExpired,
    ScripForgotten,
    ScripMintRefused,
    ScripPaymentRefused,
    ScripPaymentSent,
    ScripReceived,
    ScripSettled,
)
from protocol.messages import (
    Deposit,
    Minted,
    OfferItem,
    ScripPaid,
    ScripPayment,
    TaggedScrip,
)
from protocol.scrip import PERIOD_MS, key_ref, make_change, scrip_key, tag_scrip
from protocol.scrip_state import DEFAULT_DEPOSIT_GRACE
from protocol.vendor import VendorCore, VendorTerms
from protocol.vendor_scrip import (
    RECONFIRM_BATCH,
    RECONFIRM_SPACING,
    UNREACHABLE,
    ScripRecord,
    deposit_corr,
)
from tests.support.scrip_mint import (
    deliver,
    mint_scrip,
    send_as_broker,
    take_off_the_wire,
    vendor_pair_key,
)
from tests.support.world import E, World, events_of, make_world, seeded_identity

SHOP = "shop"


def scrip_terms(*, online: bool = False, required: tuple[str, ...] = ()) -> VendorTerms:
    return VendorTerms(
        max_jump=100,
        items=(OfferItem("article", 5), OfferItem("report", 40)),
        scrip=True,
        scrip_online=online,
        required_properties=required,
    )


@pytest.fixture
def world() -> World:
    world = make_world(vendors=0, buyers=2)
    world.enroll_vendor(SHOP, scrip_terms())
    world.enroll_vendor("kiosk", scrip_terms())
    return world


def shop(world: World) -> VendorCore:
    return world.vendors[SHOP]


def last_answer(world: World, buyer: str) -> list[object]:
    """What the buyer heard from vendors on scrip streams since the last call."""
    return [e for e in world.net.events[buyer] if isinstance(e, ScripSettled | PeerError)]


def raw_payment(  # noqa: PLR0913 - every field a forger may choose
    world: World,
    buyer: str,
    tagged: bytes,
    price: int,
    *,
    item: str = "",
    vendor: str = SHOP,
    ref: bytes | None = None,
    secret: bytes | None = None,
) -> None:
    """A ``scrip-pay`` sealed by the buyer core as a hand-made client would send it."""
    core = world.buyers[buyer]
    scrip = decode_scrip(decode_tagged_scrip(tagged).body)
    ref = key_ref(scrip.vendor_serial, scrip.period) if ref is None else ref
    if secret is None:
        secret = core.scrip_secrets[vendor, ref]
    body = ScripPayment(tagged, item, price)
    corr = deposit_corr(scrip.serial, scrip.generation)
    core.send(vendor, body, world.now, auth=Auth.SCRIP, key=MacKey(secret), ref=ref, corr=corr)
    world.pump()


def refusals(world: World, buyer: str) -> list[tuple[str, str]]:
    return [(e.code, e.detail) for e in events_of(world, buyer, PeerError)]


def rejected_at(world: World, account: str) -> list[str]:
    return [e.error.code for e in events_of(world, account, MessageRejected)]


# --- paying ------------------------------------------------------------------------------------


def test_the_offer_says_the_vendor_takes_scrip(world: World) -> None:
    buyer = world.buyers["buyer1"]
    assert buyer.offers[SHOP].offer.scrip
    plain = world.enroll_vendor("plain")
    assert not plain.terms.scrip
    assert not buyer.offers["plain"].offer.scrip
    with pytest.raises(Exception, match="does not take scrip"):
        buyer.pay_scrip("plain", 5, world.now)


def test_a_payment_takes_the_price_and_returns_change(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    assert (minted.vendor, minted.value, minted.generation) == (SHOP, 100, 0)
    buyer = world.buyers["buyer1"]
    sent = buyer.pay_scrip(SHOP, 30, world.now)
    assert sent == ScripPaymentSent(SHOP, minted.serial, 0, "", 30)
    world.pump()

    (accepted,) = events_of(world, SHOP, ScripAccepted)
    assert (accepted.serial, accepted.generation, accepted.price) == (minted.serial, 0, 30)
    assert accepted.buyer == "buyer1"
    assert accepted.spent == minted.scrip
    (settled,) = events_of(world, "buyer1", ScripSettled)
    assert (settled.price, settled.change_value, settled.change_refused) == (30, 70, "")
    change = events_of(world, "buyer1", ScripReceived)[-1]
    assert (change.serial, change.generation, change.value) == (minted.serial, 1, 70)
    assert change.scrip == accepted.change
    assert buyer.scrip_value(SHOP, world.now) == [70]
    assert not buyer.scrip_pending


def test_several_payments_spend_a_scrip_down_to_nothing(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer = world.buyers["buyer1"]
    for price in (30, 25, 45):
        buyer.pay_scrip(SHOP, price, world.now)
        world.pump()
    settled = events_of(world, "buyer1", ScripSettled)
    assert [(s.generation, s.price, s.change_value) for s in settled] == [
        (0, 30, 70),
        (1, 25, 45),
        (2, 45, 0),
    ]
    assert buyer.scrip_value(SHOP, world.now) == []
    record = shop(world).spent_scrip[minted.serial]
    assert (record.generation, record.change) == (2, b"")
    with pytest.raises(Exception, match="no scrip for shop"):
        buyer.pay_scrip(SHOP, 1, world.now)


def test_the_smallest_scrip_that_covers_the_price_is_spent(world: World) -> None:
    big = mint_scrip(world, "buyer1", SHOP, 500)
    small = mint_scrip(world, "buyer1", SHOP, 50)
    buyer = world.buyers["buyer1"]
    assert buyer.pay_scrip(SHOP, 40, world.now).serial == small.serial
    world.pump()
    assert buyer.pay_scrip(SHOP, 40, world.now).serial == big.serial


def test_an_item_is_paid_at_exactly_its_price(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer = world.buyers["buyer1"]
    with pytest.raises(Exception, match="costs 40"):
        buyer.pay_scrip(SHOP, 30, world.now, item="report")
    buyer.pay_scrip(SHOP, 40, world.now, item="report")
    world.pump()
    assert events_of(world, SHOP, ScripAccepted)[-1].item == "report"

    change = events_of(world, "buyer1", ScripReceived)[-1].scrip
    raw_payment(world, "buyer1", change, 30, item="report")  # the vendor checks it too
    assert refusals(world, "buyer1")[-1] == ("item", "'report' costs 40, not 30")
    raw_payment(world, "buyer1", change, 5, item="sandwich")
    assert refusals(world, "buyer1")[-1] == ("item", "no item 'sandwich' on this vendor's offer")
    assert shop(world).spent_scrip[minted.serial].generation == 0  # a refusal changes nothing


def test_a_price_above_the_value_is_refused(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 20)
    raw_payment(world, "buyer1", minted.scrip, 21)
    assert refusals(world, "buyer1")[-1] == ("scrip", "scrip worth 20 cannot pay 21")
    assert minted.serial not in shop(world).spent_scrip


# --- repeats and double spending ----------------------------------------------------------------


def test_a_repeat_after_the_answer_is_answered_again_and_recorded_once(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    world.buyers["buyer1"].pay_scrip(SHOP, 30, world.now)
    world.pump()
    raw_payment(world, "buyer1", minted.scrip, 30)  # the same scrip, item and price
    raw_payment(world, "buyer1", minted.scrip, 30)
    assert len(events_of(world, SHOP, ScripAccepted)) == 1
    assert not refusals(world, "buyer1")
    assert not rejected_at(world, SHOP)
    assert len(events_of(world, "buyer1", ScripSettled)) == 1  # the wallet settled it once


def test_a_lost_answer_is_resent_byte_for_byte_and_the_vendor_repeats_it(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer = world.buyers["buyer1"]
    buyer.pay_scrip(SHOP, 30, world.now)
    (payment,) = take_off_the_wire(world, "buyer1", "scrip-pay")
    world.net.inject(SHOP, payment.topic, payment.payload, world.now)
    (lost,) = take_off_the_wire(world, SHOP, "scrip-paid")  # the answer never arrives

    world.now = buyer.get_timer() or world.now
    buyer.handle_timer(world.now)
    (again,) = take_off_the_wire(world, "buyer1", "scrip-pay")
    assert open_body(parse(again.payload)) == open_body(parse(payment.payload))
    world.net.inject(SHOP, again.topic, again.payload, world.now)
    (repeated,) = take_off_the_wire(world, SHOP, "scrip-paid")
    assert open_body(parse(repeated.payload)) == open_body(parse(lost.payload))
    assert len(events_of(world, SHOP, ScripAccepted)) == 1
    world.net.inject("buyer1", repeated.topic, repeated.payload, world.now)
    assert buyer.scrip_value(SHOP, world.now) == [70]
    assert minted.serial in buyer.scrip


def test_spending_a_generation_twice_is_refused(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer = world.buyers["buyer1"]
    buyer.pay_scrip(SHOP, 30, world.now)
    world.pump()
    raw_payment(world, "buyer1", minted.scrip, 31)  # the same generation, another price
    raw_payment(world, "buyer1", minted.scrip, 30, item="article")  # another item
    assert refusals(world, "buyer1") == [("scrip", "spent")] * 2

    change = events_of(world, "buyer1", ScripReceived)[-1].scrip
    buyer.pay_scrip(SHOP, 10, world.now)  # generation 1 is spent in turn
    world.pump()
    raw_payment(world, "buyer1", minted.scrip, 30)  # generation 0 is now below the record
    raw_payment(world, "buyer1", change, 5)
    assert refusals(world, "buyer1")[2:] == [("scrip", "spent")] * 2
    assert len(events_of(world, SHOP, ScripAccepted)) == 2
    assert shop(world).spent_scrip[minted.serial].generation == 1


# --- what the vendor refuses ---------------------------------------------------------------------


def test_expired_scrip_is_refused_and_the_wallet_drops_it(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    world.now = minted.expires / 1000 + 1
    raw_payment(world, "buyer1", minted.scrip, 10)
    assert refusals(world, "buyer1")[-1] == ("scrip", "scrip expired")
    buyer = world.buyers["buyer1"]
    events = buyer.handle_timer(world.now)
    assert ScripExpired(SHOP, minted.serial, 100) in events
    assert minted.serial not in buyer.scrip


def test_another_vendors_scrip_is_refused(world: World) -> None:
    for_kiosk = mint_scrip(world, "buyer1", "kiosk", 100)
    mint_scrip(world, "buyer1", SHOP, 100)  # the buyer also holds a secret at shop
    shop_ref = events_of(world, "buyer1", ScripReceived)[-1].ref
    raw_payment(world, "buyer1", for_kiosk.scrip, 10, ref=shop_ref)
    assert refusals(world, "buyer1")[-1][0] == "scrip"  # names another certificate than ref
    # Under kiosk's own ref, shop finds a serial that is not its certificate's: no key at all.
    raw_payment(world, "buyer1", for_kiosk.scrip, 10, vendor=SHOP, ref=for_kiosk.ref,
                secret=for_kiosk.secret)  # fmt: skip
    assert rejected_at(world, SHOP).count("auth") == 1  # dropped unanswered
    assert refusals(world, "buyer1")[-1][0] == "scrip"
    assert not events_of(world, SHOP, ScripAccepted)


def test_forged_and_altered_scrip_fails_its_tag(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    tagged = decode_tagged_scrip(minted.scrip)
    forged_tag = encode(TaggedScrip(tagged.body, bytes(32)))
    raw_payment(world, "buyer1", forged_tag, 10)
    assert refusals(world, "buyer1")[-1] == ("scrip", "scrip tag does not verify")

    scrip = decode_scrip(tagged.body)
    richer = msgspec.structs.replace(scrip, value=10_000)
    raw_payment(world, "buyer1", encode(TaggedScrip(encode(richer), tagged.tag)), 5_000)
    assert refusals(world, "buyer1")[-1] == ("scrip", "scrip tag does not verify")

    # Tagged under another period's key, with the buyer's real ref: still not shop's key.
    shop_core = shop(world)
    pair = vendor_pair_key(world.broker, SHOP, shop_core.identity.agree_key)
    other_key = scrip_key(pair, SHOP, scrip.period + 1)
    raw_payment(world, "buyer1", tag_scrip(richer, other_key), 5_000)
    assert refusals(world, "buyer1")[-1] == ("scrip", "scrip tag does not verify")
    assert not events_of(world, SHOP, ScripAccepted)

    # A correct tag under the right key (the broker's or the vendor's): it would verify.
    right_key = scrip_key(pair, SHOP, scrip.period)
    assert tag_scrip(scrip, right_key) == minted.scrip


def test_stolen_scrip_needs_its_buyers_secret(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    mint_scrip(world, "buyer2", SHOP, 10)  # buyer2 holds its own secret at shop
    # buyer2 spends buyer1's scrip under its own secret: authenticated, but not its scrip.
    raw_payment(world, "buyer2", minted.scrip, 10)
    assert refusals(world, "buyer2")[-1] == ("scrip", "scrip belongs to 'buyer1'")
    # Under buyer1's stream with a secret it does not hold: not even authenticated.
    raw_payment(world, "buyer2", minted.scrip, 10, secret=bytes(32))
    assert rejected_at(world, SHOP) == ["scrip", "auth"]  # the second is not answered
    assert len(refusals(world, "buyer2")) == 1
    assert minted.serial not in shop(world).spent_scrip


def test_a_ref_of_another_period_or_length_names_no_key(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    ref = minted.ref
    period = int.from_bytes(ref[8:], "big")
    serial = int.from_bytes(ref[:8], "big")
    for bad in (key_ref(serial, period + 3), key_ref(serial, period - 2), ref[:11], ref + b"\0"):
        raw_payment(world, "buyer1", minted.scrip, 10, ref=bad, secret=minted.secret)
    assert rejected_at(world, SHOP) == ["auth"] * 4
    assert not events_of(world, "buyer1", PeerError)


def test_a_required_property_must_be_present() -> None:
    world = make_world(vendors=0, buyers=1)
    world.enroll_vendor(SHOP, scrip_terms(required=("country=DE",)))
    plain = mint_scrip(world, "buyer1", SHOP, 50)
    raw_payment(world, "buyer1", plain.scrip, 10)
    assert refusals(world, "buyer1")[-1] == ("scrip", "scrip lacks the required country=DE")
    marked = mint_scrip(world, "buyer1", SHOP, 50, properties=("country=DE", "x=unknown"))
    raw_payment(world, "buyer1", marked.scrip, 10)
    assert events_of(world, SHOP, ScripAccepted)[-1].serial == marked.serial


# --- the buyer's checks -------------------------------------------------------------------------


def forged_answer(world: World, minted: ScripReceived, body: ScripPaid) -> None:
    """An answer on the buyer's stream from shop (it holds the same secret)."""
    corr = deposit_corr(minted.serial, minted.generation)
    shop(world).send(
        "buyer1", body, world.now, auth=Auth.SCRIP, key=MacKey(minted.secret),
        ref=minted.ref, corr=corr,
    )  # fmt: skip
    world.pump()


@pytest.mark.parametrize(
    ("changed", "price"),
    [({"value": 80}, 30), ({"buyer": "buyer2"}, 30), ({"generation": 5}, 30), ({}, 100)],
)
def test_the_buyer_keeps_no_change_that_does_not_follow(
    world: World, changed: dict[str, object], price: int
) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer = world.buyers["buyer1"]
    buyer.pay_scrip(SHOP, 30, world.now)
    take_off_the_wire(world, "buyer1", "scrip-pay")  # the vendor's own answer is not used
    spent = decode_scrip(decode_tagged_scrip(minted.scrip).body)
    pair = vendor_pair_key(world.broker, SHOP, shop(world).identity.agree_key)
    key = scrip_key(pair, SHOP, spent.period)
    made = make_change(spent, 30, key)
    assert made is not None
    bad = msgspec.structs.replace(made[0], **changed)
    change = b"" if price == 100 else tag_scrip(bad, key)
    forged_answer(world, minted, ScripPaid(minted.serial, 0, 30, change))
    (settled,) = events_of(world, "buyer1", ScripSettled)
    assert settled.change_refused
    assert settled.change_value == 0
    assert buyer.scrip_value(SHOP, world.now) == []


def test_an_answer_to_no_pending_payment_changes_nothing(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    forged_answer(world, minted, ScripPaid(minted.serial, 0, 30, b""))
    assert not events_of(world, "buyer1", ScripSettled)
    assert world.buyers["buyer1"].scrip_value(SHOP, world.now) == [100]


def test_minted_scrip_must_be_what_was_asked_for(world: World) -> None:
    buyer = world.buyers["buyer1"]
    asked = buyer.mint(SHOP, 100, world.now).request
    take_off_the_wire(world, "buyer1", "scrip?")
    buyer.mint(SHOP, 99, world.now)  # the broker mints this one: it answers the first with it
    (other,) = take_off_the_wire(world, "buyer1", "scrip?")
    deliver(world, other)
    (answer,) = take_off_the_wire(world, "broker", "scrip")
    minted = open_body(parse(answer.payload))
    assert isinstance(minted, Minted)
    wrong = Minted(asked, minted.scrip, minted.secret)
    send_as_broker(world, "buyer1", buyer.identity, wrong, asked)
    assert [e.error.code for e in events_of(world, "buyer1", MessageRejected)] == ["scrip"]
    assert not buyer.scrip


def test_minted_scrip_must_name_the_buyers_current_certificate(world: World) -> None:
    buyer = world.buyers["buyer1"]
    asked = buyer.mint(SHOP, 100, world.now).request
    deliver(world, take_off_the_wire(world, "buyer1", "scrip?")[0])
    (answer,) = take_off_the_wire(world, "broker", "scrip")
    minted = open_body(parse(answer.payload))
    assert isinstance(minted, Minted)
    scrip = decode_scrip(decode_tagged_scrip(minted.scrip).body)
    assert buyer.certified is not None
    assert scrip.buyer_serial == buyer.certified.serial
    other = msgspec.structs.replace(scrip, buyer_serial=scrip.buyer_serial + 1)
    wrong = Minted(asked, tag_scrip(other, bytes(32)), minted.secret)
    send_as_broker(world, "buyer1", buyer.identity, wrong, asked)
    (rejected,) = events_of(world, "buyer1", MessageRejected)
    assert "names certificate" in str(rejected.error)
    assert not buyer.scrip


def test_minted_scrip_is_in_the_buyers_currency_and_for_what_was_asked(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer = world.buyers["buyer1"]
    scrip = buyer.scrip[minted.serial].scrip
    assert buyer.certified is not None
    assert (scrip.currency, scrip.buyer, scrip.vendor) == (buyer.certified.currency, "buyer1", SHOP)
    assert minted.serial == world.broker.scrip.last_serial


def test_a_refused_mint_is_not_asked_again(world: World) -> None:
    buyer = world.buyers["buyer1"]
    ordered = buyer.mint(SHOP, world.broker.policy.max_scrip_value + 1, world.now)
    world.pump()
    assert not buyer.mints
    (closed,) = events_of(world, "buyer1", ScripMintRefused)  # the wallet drops the order
    assert (closed.request, closed.code) == (ordered.request, "mint")
    refusal = events_of(world, "buyer1", PeerError)[-1]
    assert (refusal.peer, refusal.code) == ("broker", "mint")
    assert not buyer.scrip
    world.pump(advance=120)
    buyer.handle_timer(world.now)
    assert not take_off_the_wire(world, "buyer1", "scrip?")


# --- the spent set: durable, restored, deposited ------------------------------------------------


def restored_vendor(world: World, records: list[ScripAccepted]) -> VendorCore:
    """A new shop core from what its store kept: the certificate and the spent set."""
    old = shop(world)
    world.now += 1  # a restart takes time: the new process's counters are above the old's
    again = VendorCore(SHOP, seeded_identity(SHOP), world.broker.info, old.terms)
    again.restore_certificate(old.certificate, world.now)
    for r in records:
        again.restore_scrip(
            ScripRecord(r.serial, r.generation, r.buyer, r.item, r.price, r.spent, r.change,
                        r.expires, r.confirmed),
            world.now,
        )  # fmt: skip
    world.net.attach(again, world.now)
    world.vendors[SHOP] = again
    return again


def test_a_restarted_vendor_rebuilds_its_spent_set_from_its_records(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer = world.buyers["buyer1"]
    buyer.pay_scrip(SHOP, 30, world.now)
    world.pump()
    first_answer = shop(world).spent_scrip[minted.serial].change
    again = restored_vendor(world, events_of(world, SHOP, ScripAccepted))
    assert again.spent_scrip[minted.serial].change == first_answer

    raw_payment(world, "buyer1", minted.scrip, 50)  # the spent generation, another payment
    assert refusals(world, "buyer1")[-1] == ("scrip", "spent")
    raw_payment(world, "buyer1", minted.scrip, 30)  # a repeat is still answered the same
    buyer.pay_scrip(SHOP, 20, world.now)  # the change, before the broker answered the restart
    world.pump()
    assert refusals(world, "buyer1")[-1] == ("scrip", UNREACHABLE)  # retryable: kept pending
    assert again.spent_scrip[minted.serial].reconfirming
    again.handle_timer(world.now)  # the restored record is deposited; the broker answers
    world.pump()
    assert not again.spent_scrip[minted.serial].reconfirming
    world.now += 2
    buyer.handle_timer(world.now)  # the buyer resends, and the change is good here now
    world.pump()
    assert events_of(world, "buyer1", ScripSettled)[-1].change_value == 50


def broker_recorded(world: World, kind: type[E]) -> list[E]:
    """The broker's ledger events of one kind so far."""
    return events_of(world, world.broker.account, kind)


def test_records_are_deposited_confirmed_and_forgotten_at_the_deadline(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer, vendor = world.buyers["buyer1"], shop(world)
    buyer.pay_scrip(SHOP, 30, world.now)
    world.pump()
    buyer.pay_scrip(SHOP, 20, world.now)
    world.pump()
    assert vendor.scrip_awaiting_deposit == 1

    world.now += vendor.terms.redeem_interval
    vendor.handle_timer(world.now)
    (sent,) = take_off_the_wire(world, SHOP, "deposit")  # lost on its way
    deposit = open_body(parse(sent.payload))
    assert isinstance(deposit, Deposit)
    record = vendor.spent_scrip[minted.serial]
    assert (deposit.spent, deposit.price, deposit.change) == (record.spent, 20, record.change)
    assert parse(sent.payload).header.corr == deposit_corr(minted.serial, 1)

    world.now += 5  # unanswered: sent again, with backoff, and the broker takes it
    vendor.handle_timer(world.now)
    world.pump()
    (confirmed,) = events_of(world, SHOP, ScripDepositConfirmed)
    assert (confirmed.serial, confirmed.generation, confirmed.credited) == (minted.serial, 1, 50)
    (credited,) = broker_recorded(world, ScripDeposited)
    assert (credited.generation, credited.credit, credited.outstanding) == (1, 50, 50)
    assert world.broker.totals.credited[SHOP] == world.broker.totals.debited["buyer1"] == 50
    assert vendor.scrip_awaiting_deposit == 0
    world.now += 3600
    vendor.handle_timer(world.now)
    assert not take_off_the_wire(world, SHOP, "deposit")

    deadline = minted.expires / 1000 + vendor.terms.scrip_deposit_grace
    assert vendor.get_timer() == pytest.approx(deadline)
    world.now = deadline + 1
    assert ScripForgotten(minted.serial) in vendor.handle_timer(world.now)
    assert minted.serial not in vendor.spent_scrip


def test_a_broker_ahead_of_the_store_makes_the_vendor_adopt_its_generation(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer, vendor = world.buyers["buyer1"], shop(world)
    for price in (30, 10, 10, 10):
        buyer.pay_scrip(SHOP, price, world.now)
        world.pump()
    change = events_of(world, "buyer1", ScripReceived)[1].scrip  # generation 1
    vendor.deposit_all(world.now)
    world.pump()
    assert world.broker.scrip.records[minted.serial].generation == 3

    first = events_of(world, SHOP, ScripAccepted)[:1]  # a backup taken after one payment
    again = restored_vendor(world, first)
    assert again.deposit_all(world.now) == 1
    world.pump()
    assert again.spent_scrip[minted.serial].generation == 3  # the broker's word
    raw_payment(world, "buyer1", change, 10)  # generation 1: spent, by the broker's word
    assert refusals(world, "buyer1")[-1] == ("scrip", "spent")


def restore_record(world: World, record: ScripRecord) -> VendorCore:
    """A new shop core from a store holding one record (a backup, say)."""
    again = restored_vendor(world, [])
    again.restore_scrip(record, world.now)
    return again


def pay_and_confirm(world: World, price: int) -> ScripRecord:
    """The buyer pays ``price``, the shop deposits it and the broker confirms it."""
    vendor = shop(world)
    world.buyers["buyer1"].pay_scrip(SHOP, price, world.now)
    world.pump()
    vendor.deposit_all(world.now)
    world.pump()
    (record,) = (r for r in vendor.spent_scrip.values() if r.price == price)
    assert record.confirmed == record.generation
    return copy.copy(record)


def test_a_restored_confirmed_record_is_asked_about_and_nothing_is_recorded(
    world: World,
) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    backup = pay_and_confirm(world, 30)
    credited = len(broker_recorded(world, ScripDeposited))
    again = restore_record(world, backup)
    assert again.scrip_awaiting_deposit == 1  # confirmed, and asked about all the same
    world.buyers["buyer1"].pay_scrip(SHOP, 20, world.now)  # generation 1, before the answer
    world.pump()
    assert refusals(world, "buyer1")[-1] == ("scrip", UNREACHABLE)  # retryable: kept pending
    assert minted.serial in world.buyers["buyer1"].scrip_pending

    again.handle_timer(world.now)
    world.pump()
    record = again.spent_scrip[minted.serial]
    assert (record.reconfirming, record.refused, record.confirmed) == (False, "", 0)
    assert events_of(world, SHOP, ScripDepositConfirmed)[-1].generation == 0
    assert len(broker_recorded(world, ScripDeposited)) == credited  # a repeat: no new event
    assert not broker_recorded(world, DepositRejected)
    assert again.scrip_awaiting_deposit == 0
    world.now += 2
    world.buyers["buyer1"].handle_timer(world.now)  # the buyer resends: served now
    world.pump()
    assert events_of(world, "buyer1", ScripSettled)[-1].change_value == 50


def test_a_restored_record_adopted_from_the_broker_is_asked_with_an_older_generation(
    world: World,
) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    for price in (30, 10):
        pay_and_confirm(world, price)
    backup = copy.copy(shop(world).spent_scrip[minted.serial])
    backup.spent, backup.item, backup.price = b"", "", 0  # what adopting leaves in a store
    assert (backup.generation, backup.confirmed) == (1, 1)
    later = pay_and_confirm(world, 20)  # generation 2, credited after the backup
    gen2 = events_of(world, "buyer1", ScripReceived)[2].scrip
    credited = len(broker_recorded(world, ScripDeposited))

    again = restore_record(world, backup)
    again.handle_timer(world.now)
    (sent,) = take_off_the_wire(world, SHOP, "deposit")
    query = open_body(parse(sent.payload))
    assert isinstance(query, Deposit)
    assert decode_scrip(decode_tagged_scrip(query.spent).body).generation == 0
    deliver(world, sent)
    world.pump()
    record = again.spent_scrip[minted.serial]
    assert (record.generation, record.change, record.reconfirming) == (2, later.change, False)
    assert len(broker_recorded(world, ScripDeposited)) == credited
    assert not broker_recorded(world, DepositRejected)
    raw_payment(world, "buyer1", gen2, 40)  # generation 2 again: spent, by the broker's word
    assert refusals(world, "buyer1")[-1] == ("scrip", "spent")


def test_a_record_with_nothing_left_is_not_asked_about(world: World) -> None:
    mint_scrip(world, "buyer1", SHOP, 30)
    backup = pay_and_confirm(world, 30)  # the whole value: no change, no later generation
    again = restore_record(world, backup)
    assert again.scrip_awaiting_deposit == 0
    again.handle_timer(world.now)
    assert not take_off_the_wire(world, SHOP, "deposit")


def test_restored_records_are_asked_about_in_batches(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    record = pay_and_confirm(world, 30)
    again = restored_vendor(world, [])
    for serial in range(RECONFIRM_BATCH + 1):
        again.restore_scrip(dataclasses.replace(record, serial=minted.serial + serial), world.now)
    again.handle_timer(world.now)
    assert len(take_off_the_wire(world, SHOP, "deposit")) == RECONFIRM_BATCH
    assert again.get_timer() == pytest.approx(world.now + RECONFIRM_SPACING)


# --- a payment pending at the scrip's expiry -------------------------------------------------


def test_a_payment_answered_just_before_expiry_and_lost_is_answered_after_it(
    world: World,
) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer = world.buyers["buyer1"]
    world.now = minted.expires / 1000 - 1
    buyer.pay_scrip(SHOP, 30, world.now)
    (payment,) = take_off_the_wire(world, "buyer1", "scrip-pay")
    deliver(world, payment)  # recorded and served ...
    assert take_off_the_wire(world, SHOP, "scrip-paid")  # ... and its answer is lost
    world.now += 3  # past the expiry: the payment is kept, and resent
    assert not [e for e in buyer.handle_timer(world.now) if isinstance(e, ScripExpired)]
    world.pump()
    (settled,) = events_of(world, "buyer1", ScripSettled)  # the recorded answer
    assert settled.change_value == 70
    change = events_of(world, "buyer1", ScripReceived)[-1]
    raw_payment(world, "buyer1", minted.scrip, 40)  # not the recorded payment: expired
    assert refusals(world, "buyer1")[-1] == ("scrip", "scrip expired")
    raw_payment(world, "buyer1", change.scrip, 10)  # its change expires with it
    assert refusals(world, "buyer1")[-1] == ("scrip", "scrip expired")
    assert len(events_of(world, SHOP, ScripAccepted)) == 1


def test_a_payment_never_answered_is_written_off_at_the_deadline(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer = world.buyers["buyer1"]
    world.now = minted.expires / 1000 - 1
    buyer.pay_scrip(SHOP, 30, world.now)
    take_off_the_wire(world, "buyer1", "scrip-pay")  # the vendor never sees it
    deadline = minted.expires / 1000 + DEFAULT_DEPOSIT_GRACE
    while (due := buyer.get_timer()) is not None and due <= deadline:
        world.now = due
        assert not [e for e in buyer.handle_timer(world.now) if isinstance(e, ScripExpired)]
        take_off_the_wire(world, "buyer1", "scrip-pay")
    assert minted.serial in buyer.scrip_pending
    world.now = deadline + 1
    assert ScripExpired(SHOP, minted.serial, 100) in buyer.handle_timer(world.now)
    assert minted.serial not in buyer.scrip_pending
    assert minted.serial not in buyer.scrip


# --- on-line serial check ------------------------------------------------------------------------


@pytest.fixture
def online() -> World:
    world = make_world(vendors=0, buyers=1)
    world.enroll_vendor(SHOP, scrip_terms(online=True))
    return world


def pay_online(world: World, price: int) -> tuple[ScripReceived, Outgoing]:
    """A payment whose deposit the vendor has sent, held back before the broker."""
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    world.buyers["buyer1"].pay_scrip(SHOP, price, world.now)
    (payment,) = take_off_the_wire(world, "buyer1", "scrip-pay")
    world.net.inject(SHOP, payment.topic, payment.payload, world.now)
    (sent,) = take_off_the_wire(world, SHOP, "deposit")
    return minted, sent


def test_online_the_vendor_serves_only_on_the_brokers_answer(online: World) -> None:
    minted, sent = pay_online(online, 30)
    deposit = open_body(parse(sent.payload))
    assert isinstance(deposit, Deposit)
    assert deposit.spent == minted.scrip
    assert not events_of(online, SHOP, ScripAccepted)  # nothing served, nothing recorded
    assert not events_of(online, "buyer1", ScripSettled)

    deliver(online, sent)
    online.pump()
    (credited,) = broker_recorded(online, ScripDeposited)
    assert (credited.serial, credited.generation, credited.credit) == (minted.serial, 0, 30)
    vendor = shop(online)
    (accepted,) = events_of(online, SHOP, ScripAccepted)
    assert accepted.confirmed == 0  # credited already: never deposited again
    assert accepted.change == credited.change
    assert vendor.scrip_awaiting_deposit == 0
    (settled,) = events_of(online, "buyer1", ScripSettled)
    assert settled.change_value == 70


def replica(world: World) -> VendorCore:
    """Another process serving shop with nothing stored: on-line, the broker is its spent set."""
    return restored_vendor(world, [])


def test_online_a_generation_the_broker_took_already_is_refused_as_spent(online: World) -> None:
    minted = mint_scrip(online, "buyer1", SHOP, 100)
    buyer = online.buyers["buyer1"]
    for price in (30, 10):
        buyer.pay_scrip(SHOP, price, online.now)
        online.pump()
    assert online.broker.scrip.records[minted.serial].generation == 1
    replica(online)
    raw_payment(online, "buyer1", minted.scrip, 31)  # generation 0, which the broker passed
    assert refusals(online, "buyer1")[-1] == ("scrip", "spent")
    assert len(events_of(online, SHOP, ScripAccepted)) == 2  # the first process's two
    assert not broker_recorded(online, DepositRejected)  # an older generation: the state


def test_online_a_deposit_refusal_is_relayed_as_spent(online: World) -> None:
    minted = mint_scrip(online, "buyer1", SHOP, 100)
    online.buyers["buyer1"].pay_scrip(SHOP, 30, online.now)
    online.pump()
    replica(online)
    raw_payment(online, "buyer1", minted.scrip, 40)  # the same generation, another payment
    assert refusals(online, "buyer1")[-1] == ("scrip", "spent")
    (rejected,) = broker_recorded(online, DepositRejected)
    assert rejected.reason == "generation 0 already deposited"
    raw_payment(online, "buyer1", minted.scrip, 30)  # the identical payment: the same change
    (settled,) = events_of(online, "buyer1", ScripSettled)
    assert settled.change_value == 70
    assert len(broker_recorded(online, ScripDeposited)) == 1


def test_online_an_unanswered_deposit_tells_the_buyer_to_retry(online: World) -> None:
    minted, _ = pay_online(online, 30)
    online.now += 5
    shop(online).handle_timer(online.now)
    assert take_off_the_wire(online, SHOP, "deposit")  # asked again: still unreachable
    online.pump()
    assert refusals(online, "buyer1")[-1] == ("scrip", "broker unreachable")
    buyer = online.buyers["buyer1"]
    assert minted.serial in buyer.scrip_pending  # kept, to be resent byte for byte
    assert not events_of(online, "buyer1", ScripPaymentRefused)


def test_online_a_retry_after_a_lost_deposited_serves_once(online: World) -> None:
    minted, sent = pay_online(online, 30)
    deliver(online, sent)  # credited ...
    online.broker.data_to_send()  # ... and the ``deposited`` is lost
    online.now += 5
    shop(online).handle_timer(online.now)  # the buyer is told to retry; the deposit goes again
    (again,) = take_off_the_wire(online, SHOP, "deposit")
    first, retry = (open_body(parse(out.payload)) for out in (sent, again))
    assert isinstance(first, Deposit)
    assert isinstance(retry, Deposit)
    assert len(first.claim) == 16
    assert retry == first  # the same claim: the broker tells its own retry from a replica's
    online.buyers["buyer1"].resume_scrip(online.now)  # the buyer retries too: a third deposit
    online.pump()
    deliver(online, again)  # and the timer's retry is answered after that
    online.pump()

    (accepted,) = events_of(online, SHOP, ScripAccepted)  # served, exactly once
    assert (accepted.serial, accepted.generation, accepted.confirmed) == (minted.serial, 0, 0)
    (settled,) = events_of(online, "buyer1", ScripSettled)
    assert settled.change_value == 70
    (credited,) = broker_recorded(online, ScripDeposited)  # and credited once
    assert credited.claim == first.claim
    assert online.broker.totals.credited[SHOP] == 30
    assert online.broker.totals.debited["buyer1"] == 30
    assert shop(online).scrip_online_pending == 0


def test_a_deposit_without_a_claim_encodes_as_before() -> None:
    offline = Deposit(b"spent", "article", 30, b"change")
    assert msgspec.msgpack.decode(encode(offline)) == [b"spent", "article", 30, b"change"]
    claimed = Deposit(b"spent", "article", 30, b"change", b"\x05" * 16)
    assert decode_as(Deposit, encode(claimed)) == claimed
    assert decode_as(Deposit, encode(offline)) == offline
    with pytest.raises(MalformedMessageError):
        decode_as(Deposit, encode(Deposit(b"spent", "article", 30, b"change", b"\x05" * 17)))


def test_online_a_payment_pending_at_expiry_is_answered_after_it(online: World) -> None:
    minted = mint_scrip(online, "buyer1", SHOP, 100)
    buyer, vendor = online.buyers["buyer1"], shop(online)
    online.now = minted.expires / 1000 - 1
    buyer.pay_scrip(SHOP, 30, online.now)
    (payment,) = take_off_the_wire(online, "buyer1", "scrip-pay")
    deliver(online, payment)
    take_off_the_wire(online, SHOP, "deposit")  # the broker is unreachable
    online.now += 5  # past the expiry
    vendor.handle_timer(online.now)
    take_off_the_wire(online, SHOP, "deposit")
    online.pump()
    assert refusals(online, "buyer1")[-1] == ("scrip", UNREACHABLE)
    assert not [e for e in buyer.handle_timer(online.now) if isinstance(e, ScripExpired)]
    online.pump()  # its resend reaches the vendor, which asks the broker again: credited
    assert ("scrip", "scrip expired") not in refusals(online, "buyer1")
    (settled,) = events_of(online, "buyer1", ScripSettled)
    assert (settled.serial, settled.change_value) == (minted.serial, 70)
    assert len(events_of(online, SHOP, ScripAccepted)) == 1
    raw_payment(online, "buyer1", minted.scrip, 40)  # another payment of it: expired
    assert refusals(online, "buyer1")[-1] == ("scrip", "scrip expired")


# --- the buyer's restart -------------------------------------------------------------------------


def test_a_restarted_buyer_resends_its_pending_payment(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    old = world.buyers["buyer1"]
    old.pay_scrip(SHOP, 30, world.now)
    take_off_the_wire(world, "buyer1", "scrip-pay")  # lost with the process
    world.now += 1
    again = BuyerCore("buyer1", seeded_identity("buyer1"), world.broker.info)
    again.restore_certificate(old.certificate, world.now)
    again.restore_scrip(minted.scrip, minted.secret)
    again.restore_scrip_payment(minted.serial, "", 30, world.now)
    world.net.attach(again, world.now)
    world.buyers["buyer1"] = again
    assert again.resume_scrip(world.now) == 1
    world.pump()
    (settled,) = events_of(world, "buyer1", ScripSettled)
    assert settled.change_value == 70
    assert [h.scrip.value for h in again.scrip.values()] == [70]


def test_the_vendor_takes_yesterdays_scrip_but_not_older(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    vendor = shop(world)
    period = int.from_bytes(minted.ref[8:], "big")
    start = period * PERIOD_MS
    assert vendor.accepts_period(period, start)
    assert vendor.accepts_period(period, start + 2 * PERIOD_MS)  # all of the next day
    assert not vendor.accepts_period(period, start + 2 * PERIOD_MS + 1)
    assert vendor.accepts_period(period + 1, start + PERIOD_MS - 60_000)  # tomorrow, soon
    assert not vendor.accepts_period(period + 1, start + PERIOD_MS - 121_000)
