"""Commitments and certificates the cores refuse (presented elsewhere, expired, forged,
revoked, a flood of bad ones), and the credit the vendor and the broker guard."""

from __future__ import annotations

from protocol import topics
from protocol.broker import BrokerPolicy
from protocol.broker_events import RedemptionRejected
from protocol.chain import HashChain
from protocol.envelope import Auth, seal
from protocol.errors import CertificateError, CommitmentError
from protocol.events import MessageRejected, PeerError, ReceiptReceived
from protocol.messages import Commit, Redeem
from tests.attacks.cores import open_paid_channel, vendor_total
from tests.support.forgery import (
    MALLORY,
    certificate,
    chain_mac_key,
    commit,
    commitment,
    ms,
    unverifiable_commit,
)
from tests.support.world import World, events_of, make_world, seeded_identity


def test_commitment_presented_to_another_vendor_is_rejected() -> None:
    world = make_world(vendors=2, buyers=1)
    buyer = world.buyers["buyer1"]
    opened = buyer.open_channel("vendor1", 100, world.now)
    (sent,) = buyer.data_to_send()
    # Re-address the commit to vendor2 (the attacker re-MACs it with a key it could derive
    # only as the buyer; here the buyer itself tries to spend one chain twice).
    vendor2_key = buyer.offers["vendor2"].certificate.agree_key
    key = chain_mac_key(buyer.identity, "buyer1", "vendor2", vendor2_key, opened.commitment_id)
    topic = topics.inbox("vendor2", "buyer1")
    payload = seal(
        topic,
        Commit(opened.commitment),
        auth=Auth.CHAIN,
        sender="buyer1",
        recipient="vendor2",
        counter=1,
        now=world.now,
        key=key,
        ref=opened.commitment_id,
    )
    events = world.net.inject("vendor2", topic, payload, world.now)
    assert any(
        isinstance(e, MessageRejected) and isinstance(e.error, CommitmentError) for e in events
    )
    assert not world.vendors["vendor2"].chains
    # And vendor2 cannot redeem it at the broker either.
    world.net.inject("vendor1", sent.topic, sent.payload, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 5, world.now)
    world.pump()
    vendor1_state = world.vendors["vendor1"].chains[opened.commitment_id]
    world.vendors["vendor2"].send(
        "broker",
        Redeem(opened.commitment, 5, vendor1_state.word),
        world.now,
        auth=Auth.PAIR,
        key=world.vendors["vendor2"].broker_key,
    )
    world.pump()
    assert world.broker.totals.credited.get("vendor2", 0) == 0
    rejections = [e for e in world.net.ledger_events("broker") if isinstance(e, RedemptionRejected)]
    assert rejections
    assert rejections[0].vendor == "vendor2"


def test_expired_certificate_is_rejected() -> None:
    world = make_world(vendors=1, buyers=1, policy=BrokerPolicy(certificate_lifetime=3600))
    buyer = world.buyers["buyer1"]
    world.now += 2 * 3600
    buyer.open_channel("vendor1", 100, world.now)
    world.pump()
    rejections = events_of(world, "vendor1", MessageRejected)
    assert rejections
    assert isinstance(rejections[-1].error, CertificateError | CommitmentError)
    assert not world.vendors["vendor1"].chains


def test_forged_broker_signature_is_rejected(world: World) -> None:
    # Mallory certifies herself with a key that is not the broker's and commits.
    mallory, now_ms = seeded_identity(MALLORY), ms(world.now)
    forged = certificate(
        seeded_identity("not-the-broker"), mallory, MALLORY, now_ms - 1000, now_ms + 10**9,
        serial=999,
    )  # fmt: skip
    root = HashChain(b"\x05" * 32, 100).root
    topic, payload, cid = commit(
        mallory, commitment("vendor1", forged, now_ms, now_ms + 10**6, root=root),
        sender=MALLORY, counter=1, now=world.now,
        vendor_agree_key=world.vendors["vendor1"].identity.agree_key,
    )  # fmt: skip
    events = world.net.inject("vendor1", topic, payload, world.now)
    assert any(
        isinstance(e, MessageRejected) and isinstance(e.error, CertificateError) for e in events
    )
    assert cid not in world.vendors["vendor1"].chains
    assert not world.vendors["vendor1"].data_to_send()  # no answer to the unauthenticated


def test_revoked_buyer_can_neither_commit_nor_pay(world: World) -> None:
    buyer = world.buyers["buyer1"]
    cid = open_paid_channel(world, units=2)
    world.broker.revoke("buyer1", world.now)
    world.pump()
    assert world.vendors["vendor1"].revoked
    buyer.pay(cid, 1, world.now)
    world.pump()
    buyer.open_channel("vendor1", 10, world.now)
    world.pump()
    assert vendor_total(world) == 2
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 2
    assert events_of(world, "buyer1", PeerError)


def test_failed_commitments_are_throttled_per_sender_until_the_window_passes(
    world: World,
) -> None:
    vendor = world.vendors["vendor1"]
    budget, window = vendor.terms.commit_failure_budget, vendor.terms.commit_failure_window
    codes = []
    for offset in range(budget + 3):
        topic, payload = unverifiable_commit(world.now, offset)
        (event,) = world.net.inject("vendor1", topic, payload, world.now)
        assert isinstance(event, MessageRejected)
        codes.append(event.error.code)
    assert codes == ["certificate"] * budget + ["throttled"] * 3
    world.now += window + 1
    topic, payload = unverifiable_commit(world.now, 99)
    (event,) = world.net.inject("vendor1", topic, payload, world.now)
    assert isinstance(event, MessageRejected)
    assert event.error.code == "certificate"  # a new window: checked (and refused) again
    # An honest buyer was never throttled.
    assert open_paid_channel(world, units=3)
    assert vendor_total(world) == 3


def test_vendor_exposure_counts_unspent_chains_until_they_expire() -> None:
    world = make_world(vendors=1, buyers=0)
    buyer = world.enroll_buyer("buyer1", credit_limit=100)
    world.buyers["buyer1"] = buyer
    vendor = world.vendors["vendor1"]
    opened = buyer.open_channel("vendor1", 60, world.now, lifetime=10)
    world.pump()
    buyer.pay(opened.commitment_id, 20, world.now)
    world.pump()
    assert vendor.exposure("buyer1", world.now) == 60  # 20 held + 40 still payable
    refused = buyer.open_channel("vendor1", 50, world.now)
    world.pump()
    assert refused.commitment_id not in vendor.chains
    world.now += 11  # the first chain expired: only its 20 paid paywords count
    assert vendor.exposure("buyer1", world.now) == 20
    accepted = buyer.open_channel("vendor1", 80, world.now)
    world.pump()
    assert accepted.commitment_id in vendor.chains
    assert vendor.exposure("buyer1", world.now) == 100


def test_redeemed_paywords_still_count_so_one_vendor_keeps_a_buyer_within_its_limit() -> None:
    # Reported: with a limit of 50, debits reached 52. The vendor forgot what it had
    # redeemed and took a second chain of 50; the broker's limit caps total debits.
    world = make_world(vendors=1, buyers=0)
    buyer = world.enroll_buyer("buyer1", credit_limit=50)
    vendor = world.vendors["vendor1"]
    first = buyer.open_channel("vendor1", 50, world.now).commitment_id
    world.pump()
    buyer.pay(first, 50, world.now)
    world.pump()
    vendor.redeem_all(world.now)
    world.pump()
    assert world.broker.totals.debited["buyer1"] == 50
    assert vendor.exposure("buyer1", world.now) == 50  # redeemed, and still counted
    assert buyer.refusal("vendor1", [1, 1], "", 50, world.now) == (
        "2 units (2) would pass your credit limit of 50: 50 is paid already, 0 is left"
    )
    second = buyer.open_channel("vendor1", 50, world.now).commitment_id  # a rogue wallet
    world.pump()
    assert second not in vendor.chains
    refusal = events_of(world, "buyer1", PeerError)[-1]
    assert refusal.detail == (
        "credit limit 50: 50 already paid or payable here, a chain worth 50 more would pass it"
    )
    assert world.broker.totals.debited["buyer1"] == 50
    assert not world.broker.revoked


def test_broker_revokes_a_buyer_past_its_limit_once() -> None:
    world = make_world(vendors=2, buyers=0)
    buyer = world.enroll_buyer("buyer1", credit_limit=50)
    for vendor in ("vendor1", "vendor2"):
        cid = buyer.open_channel(vendor, 50, world.now).commitment_id
        world.pump()
        buyer.pay(cid, 40, world.now)
        world.pump()
        world.vendors[vendor].redeem_all(world.now)
        world.pump()
    serial = world.broker.accounts["buyer1"].serial
    assert serial in world.broker.revoked
    assert all(serial in vendor.revoked for vendor in world.vendors.values())
    assert world.broker.totals.debited["buyer1"] == 80
    exceeded = [
        e for e in world.net.ledger_events("broker") if type(e).__name__ == "CreditLimitExceeded"
    ]
    assert len(exceeded) <= 1
