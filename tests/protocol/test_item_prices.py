"""Item prices: a payment that names an item must name one on offer and cover its price.

The vendor refuses it otherwise (``item``) before anything changes; the buyer refuses it
first when its copy of the offer shows the problem, and learns of the vendor's refusal of
its newest payment as a ``PaymentRefused``.
"""

from __future__ import annotations

import msgspec
import pytest

from protocol.buyer_rules import payment_steps
from protocol.errors import ItemError, LocalProtocolError
from protocol.events import MessageRejected, PaymentAccepted, PaymentRefused, ReceiptReceived
from protocol.messages import OfferItem
from protocol.vendor import VendorTerms
from tests.support.world import World, events_of


def open_chain(world: World, length: int = 1000) -> bytes:
    opened = world.buyers["buyer1"].open_channel("vendor1", length, world.now)
    world.pump()
    return opened.commitment_id


def older_offer(world: World, *items: OfferItem) -> None:
    """The buyer holds an older offer than the vendor's terms (prices changed since)."""
    known = world.buyers["buyer1"].offers["vendor1"]
    known.offer = msgspec.structs.replace(known.offer, items=list(items))


def rejections(world: World) -> list[Exception]:
    return [event.error for event in events_of(world, "vendor1", MessageRejected)]


def test_the_buyer_refuses_an_item_not_offered_or_not_covered_in_words(world: World) -> None:
    buyer = world.buyers["buyer1"]
    cid = open_chain(world)
    with pytest.raises(LocalProtocolError, match=r"vendor1 does not offer 'pizza' \(it offers"):
        buyer.pay(cid, 10, world.now, item="pizza")
    with pytest.raises(LocalProtocolError, match="'article' costs 5 at vendor1, but a payment"):
        buyer.pay(cid, 4, world.now, item="article")
    assert buyer.channels[cid].spent == 0  # nothing was revealed
    assert buyer.refusal("vendor1", [4], "article", 0, world.now) == (
        "'article' costs 5 at vendor1, but a payment of 4 units of 1 pays 4: pay at least 5 units"
    )
    assert buyer.refusal("vendor1", [5], "article", 0, world.now) is None


def test_the_vendor_refuses_an_unknown_or_underpaid_item_and_changes_nothing(
    world: World,
) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    cid = open_chain(world)
    buyer.pay(cid, 3, world.now, item="minute")  # 3 units of 1 cover a minute at 2
    world.pump()
    held = (vendor.chains[cid].index, vendor.chains[cid].word)
    older_offer(world, OfferItem("article", 1), OfferItem("pizza", 1))

    for units, item in ((1, "pizza"), (1, "article")):
        buyer.pay(cid, units, world.now, item=item)
        world.pump()
        refused = events_of(world, "buyer1", PaymentRefused)[-1]
        assert (refused.commitment_id, refused.index, refused.code) == (
            cid,
            buyer.channels[cid].spent,
            "item",
        )
        assert (vendor.chains[cid].index, vendor.chains[cid].word) == held
    assert [str(e) for e in rejections(world)] == [
        "no item 'pizza' on this vendor's offer",
        "'article' costs 5; this payment adds 2 units of 1 = 2",  # with the refused pizza's
    ]
    assert all(isinstance(e, ItemError) for e in rejections(world))
    assert [e.units for e in events_of(world, "vendor1", PaymentAccepted)] == [3]

    # The refused units were revealed but not kept: they count towards the next payment.
    buyer.pay(cid, 3, world.now, item="article")
    world.pump()
    accepted = events_of(world, "vendor1", PaymentAccepted)[-1]
    assert (accepted.index, accepted.units, accepted.item) == (8, 5, "article")
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 8


def test_refused_units_plus_the_next_payment_past_max_jump_heal_by_retransmission(
    world: World,
) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    max_jump = vendor.terms.max_jump
    cid = open_chain(world)
    older_offer(world, OfferItem("article", 1), OfferItem("minute", 2))
    buyer.pay(cid, max_jump - 10, world.now, item="minute")  # covered: accepted
    world.pump()
    buyer.pay(cid, 1, world.now, item="article")  # 1 < 5: refused, the vendor stays put
    world.pump()
    buyer.pay(cid, max_jump, world.now)  # from the vendor's index: a jump of max_jump + 1
    world.pump()
    codes = [e.code for e in events_of(world, "buyer1", PaymentRefused)]
    assert codes == ["item"]  # the jump over unacknowledged units is a gap to fill, not final
    assert vendor.chains[cid].index == max_jump - 10

    # The retransmission, due at once, re-sends from the last receipt in steps it accepts.
    assert buyer.get_timer() == world.now
    buyer.handle_timer(world.now)
    world.pump()
    assert vendor.chains[cid].index == buyer.channels[cid].spent == 2 * max_jump - 9
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 2 * max_jump - 9


def test_payment_steps_take_the_remainder_first_so_the_item_step_is_the_largest() -> None:
    assert payment_steps(0, 150, 100) == [50, 150]
    assert payment_steps(10, 310, 100) == [110, 210, 310]
    assert payment_steps(7, 8, 100) == [8]
    assert payment_steps(0, 100, 100) == [100]
    assert payment_steps(5, 5, 100) == []


def test_terms_refuse_an_item_no_single_payment_can_buy() -> None:
    with pytest.raises(LocalProtocolError, match="price of 1 to 200"):
        VendorTerms(unit_value=2, max_jump=100, items=(OfferItem("bike", 201),))
    with pytest.raises(LocalProtocolError, match="once"):
        VendorTerms(items=(OfferItem("tea", 2), OfferItem("tea", 3)))
    assert VendorTerms(unit_value=2, max_jump=100, items=(OfferItem("bike", 200),)).items
