"""End-to-end flows through the three cores, wired together in memory."""

from __future__ import annotations

import random

from protocol.broker import BrokerCore
from protocol.broker_events import CreditLimitExceeded, PaywordsRedeemed
from protocol.envelope import open_body, parse
from protocol.events import (
    BalanceReceived,
    InvoiceReceived,
    MessageRejected,
    PaymentAccepted,
    PaymentRefused,
    PeerError,
    ReceiptReceived,
    RedemptionConfirmed,
)
from protocol.messages import Redeem
from protocol.vendor import VendorCore, VendorTerms
from tests.support.world import World, default_terms, events_of, make_world, seeded_identity


def test_thousand_paywords_in_mixed_steps_are_credited_exactly(world: World) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    opened = buyer.open_channel("vendor1", 60_000, world.now)
    world.pump()
    rng = random.Random(2026)
    paid = 0
    for number in range(1000):
        units = rng.choice([1, 1, 1, 2, 3, 5, 10, 25, 150])  # 150 > max_jump: split in two
        item = "article" if units >= 5 else ""  # an article costs 5: smaller pays for nothing
        buyer.pay(opened.commitment_id, units, world.now, item=item)
        paid += units
        if number % 7 == 0:
            world.pump(0.01)
    world.pump(0.01)

    accepted = events_of(world, "vendor1", PaymentAccepted)
    assert sum(event.amount for event in accepted) == paid
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == paid
    assert not events_of(world, "vendor1", MessageRejected)

    world.now += vendor.terms.redeem_interval
    vendor.handle_timer(world.now)
    world.pump()
    confirmed = events_of(world, "vendor1", RedemptionConfirmed)
    assert confirmed[-1].amount == paid
    assert world.broker.totals.credited["vendor1"] == paid
    assert world.broker.totals.debited["buyer1"] == paid
    assert vendor.unredeemed_amount == 0
    assert vendor.get_timer() is None


def test_several_buyers_and_vendors_balance() -> None:
    world = make_world(vendors=2, buyers=3)
    rng = random.Random(7)
    paid: dict[tuple[str, str], int] = {}
    channels = {}
    for buyer_name, buyer in world.buyers.items():
        for vendor_name in world.vendors:
            channels[buyer_name, vendor_name] = buyer.open_channel(vendor_name, 5_000, world.now)
    world.pump()
    for _ in range(600):
        pair = rng.choice(sorted(channels))
        units = rng.randint(1, 12)
        world.buyers[pair[0]].pay(channels[pair].commitment_id, units, world.now)
        paid[pair] = paid.get(pair, 0) + units
    world.pump(1.0)
    for vendor in world.vendors.values():
        assert vendor.redeem_all(world.now) > 0
    world.pump()

    totals = world.broker.totals
    assert sum(totals.debited.values()) == sum(totals.credited.values()) == sum(paid.values())
    for (buyer_name, vendor_name), amount in paid.items():
        assert totals.amounts[buyer_name, vendor_name] == amount

    world.buyers["buyer2"].query_balance(world.now)
    world.buyers["buyer2"].query_invoice(world.now)
    world.pump()
    balance = events_of(world, "buyer2", BalanceReceived)[-1].balance
    invoice = events_of(world, "buyer2", InvoiceReceived)[-1].invoice
    owed = sum(amount for (b, _), amount in paid.items() if b == "buyer2")
    assert balance.debited == invoice.total == owed
    assert {line.counterparty for line in invoice.lines} == set(world.vendors)


def test_the_same_redemption_twice_credits_once(world: World) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    opened = buyer.open_channel("vendor1", 100, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 40, world.now)
    world.pump()
    vendor.redeem_all(world.now)
    redeem = world.net.cores["vendor1"].data_to_send()
    assert len(redeem) == 1
    for _ in range(2):  # QoS 1 redelivery, and a retry with a fresh envelope
        world.net.inject("broker", redeem[0].topic, redeem[0].payload, world.now)
    vendor.redeem_all(world.now)
    world.pump()
    assert world.broker.totals.credited["vendor1"] == 40
    redeemed = [e for e in world.net.ledger_events("broker") if isinstance(e, PaywordsRedeemed)]
    assert len(redeemed) == 1
    confirmations = events_of(world, "vendor1", RedemptionConfirmed)
    assert [c.amount for c in confirmations] == [40]


def test_lost_messages_are_retransmitted_and_answered_idempotently(world: World) -> None:
    buyer = world.buyers["buyer1"]
    opened = buyer.open_channel("vendor1", 100, world.now)
    lost_commit = buyer.data_to_send()
    assert len(lost_commit) == 1
    timer = buyer.get_timer()
    assert timer is not None
    world.now = timer
    buyer.handle_timer(world.now)
    world.pump()
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 0

    buyer.pay(opened.commitment_id, 3, world.now)
    buyer.data_to_send()  # the payment is lost on the way
    timer = buyer.get_timer()
    assert timer is not None
    world.now = timer
    buyer.handle_timer(world.now)
    world.pump()
    buyer.handle_timer(world.now + 1000)  # a late duplicate: re-acknowledged, not re-credited
    world.pump()
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 3
    assert sum(e.amount for e in events_of(world, "vendor1", PaymentAccepted)) == 3
    assert buyer.get_timer() is None


def test_payments_in_flight_are_retransmitted_only_once_the_receipts_stop(world: World) -> None:
    buyer = world.buyers["buyer1"]
    cid = buyer.open_channel("vendor1", 100, world.now).commitment_id
    world.pump()
    start = world.now
    buyer.pay(cid, 5, start)
    first = buyer.data_to_send()  # still on its way when the next payment goes
    buyer.pay(cid, 5, start + 1.5)
    second = buyer.data_to_send()
    for out in first:
        world.net.inject("vendor1", out.topic, out.payload, start + 1.5)
    world.pump(1.5)  # the receipt for 5: progress, with 10 still unacknowledged
    buyer.handle_timer(start + 3.0)  # past the first payment's 2 s, but receipts come
    assert buyer.data_to_send() == []
    for out in second:
        world.net.inject("vendor1", out.topic, out.payload, start + 3.0)
    buyer.pay(cid, 5, start + 3.0)
    buyer.data_to_send()  # lost: receipts for it never come
    world.pump(1.5)
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 10
    timer = buyer.get_timer()
    assert timer == start + 3.0 + buyer.retry_initial  # counted from the last receipt
    buyer.handle_timer(timer)
    world.pump()
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 15
    assert buyer.get_timer() is None


def test_a_payment_lost_in_flight_is_a_gap_the_next_refusal_does_not_make_final(
    world: World,
) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    cid = buyer.open_channel("vendor1", 1000, world.now).commitment_id
    world.pump()
    buyer.pay(cid, 60, world.now)
    buyer.data_to_send()  # lost: a vendor that crashed before storing it, say
    buyer.pay(cid, 60, world.now)  # a jump of 120 from what the vendor holds: refused
    world.pump()
    assert events_of(world, "buyer1", PeerError)[-1].code == "payment"
    assert events_of(world, "buyer1", PaymentRefused) == []  # not the vendor's last word
    assert buyer.get_timer() == world.now  # the gap is filled at once
    buyer.handle_timer(world.now)
    world.pump()
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == vendor.chains[cid].index == 120
    assert sum(e.units for e in events_of(world, "vendor1", PaymentAccepted)) == 120


def test_on_line_mode_reserves_the_chain_against_the_credit_limit() -> None:
    world = make_world(vendors=0, buyers=0)
    terms = VendorTerms(unit_value=2, currency="EUR", max_length=1000, max_jump=50, online=True)
    world.enroll_vendor("kiosk", terms)
    buyer = world.enroll_buyer("alice", credit_limit=1000)
    first = buyer.open_channel("kiosk", 400, world.now)  # reserves 800
    world.pump()
    assert events_of(world, "alice", ReceiptReceived)[-1].commitment_id == first.commitment_id
    assert world.broker.totals.reserved["alice"] == 800

    buyer.open_channel("kiosk", 200, world.now)  # would reserve 400 more: refused
    world.pump()
    refusal = events_of(world, "alice", PeerError)[-1]
    assert refusal.code == "commitment"
    assert "credit limit" in refusal.detail

    buyer.pay(first.commitment_id, 100, world.now)
    world.pump()
    world.vendors["kiosk"].redeem_all(world.now)
    world.pump()
    totals = world.broker.totals
    assert totals.debited["alice"] == 200
    assert totals.reserved["alice"] == 600
    assert not [e for e in world.net.ledger_events("broker") if isinstance(e, CreditLimitExceeded)]


def test_broker_state_rebuilt_from_its_events_answers_duplicates_the_same(world: World) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    history = world.net.ledger_events("broker")
    opened = buyer.open_channel("vendor1", 100, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 30, world.now)
    world.pump()
    vendor.redeem_all(world.now)
    world.pump()
    history += world.net.ledger_events("broker")

    restarted = BrokerCore("broker", seeded_identity("broker"))
    restarted.rebuild(history)
    assert restarted.totals.credited == world.broker.totals.credited
    assert restarted.chains[opened.commitment_id].index == 30

    world.net.cores["broker"] = restarted
    # The vendor lost the receipt (crashed before storing it) and asks again.
    vendor.chains[opened.commitment_id].redeemed = 0
    vendor.redeem_all(world.now)
    world.pump()
    assert restarted.totals.credited["vendor1"] == 30
    assert not [e for e in world.net.ledger_events("broker") if isinstance(e, PaywordsRedeemed)]


def test_vendor_restored_from_its_store_keeps_accepting(world: World) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    opened = buyer.open_channel("vendor1", 100, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 10, world.now)
    world.pump()
    stored = vendor.chains[opened.commitment_id]

    restarted = VendorCore(
        "vendor1", seeded_identity("vendor1"), world.broker.info, default_terms()
    )
    restarted.restore_certificate(vendor.certificate, world.now)
    restarted.restore_chain(stored.verified.signed, stored.index, stored.word, 0, world.now)
    world.net.attach(restarted, world.now)
    buyer.pay(opened.commitment_id, 5, world.now + 1)
    world.pump(1)
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 15
    restarted.redeem_all(world.now)
    world.pump()
    assert world.broker.totals.credited["vendor1"] == 15


def test_redeem_message_carries_the_commitment_and_the_last_payword(world: World) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    opened = buyer.open_channel("vendor1", 50, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 7, world.now)
    world.pump()
    vendor.redeem_all(world.now)
    out = vendor.data_to_send()
    body = open_body(parse(out[0].payload))
    assert isinstance(body, Redeem)
    assert body.commitment == opened.commitment
    assert body.index == 7
    assert body.payword == buyer.channels[opened.commitment_id].chain.word(7)


def test_on_line_registration_lost_on_the_way_is_resent() -> None:
    world = make_world(vendors=0, buyers=0)
    terms = VendorTerms(unit_value=1, currency="EUR", max_length=1000, max_jump=50, online=True)
    vendor = world.enroll_vendor("kiosk", terms)
    buyer = world.enroll_buyer("alice", credit_limit=10_000)
    opened = buyer.open_channel("kiosk", 100, world.now)
    (commit,) = buyer.data_to_send()
    world.net.inject("kiosk", commit.topic, commit.payload, world.now)
    (register,) = vendor.data_to_send()  # lost on its way to the broker
    assert register.topic.endswith("/in/broker/kiosk")
    timer = vendor.get_timer()
    assert timer is not None
    world.now = timer
    vendor.handle_timer(world.now)
    world.pump()
    assert opened.commitment_id in vendor.chains
    assert events_of(world, "alice", ReceiptReceived)[-1].commitment_id == opened.commitment_id
    assert vendor.get_timer() is None
