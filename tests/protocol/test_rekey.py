"""An agent's key rotation through the cores, in memory: new keys on the old key's authority.

The broker certifies the new keys and revokes the old certificate in one decision,
answers a repeat with the same certificate, and refuses a request the old key did not
authorize. Chains opened under the old certificate end; new ones pay.
"""

from __future__ import annotations

from protocol.broker_events import CertificateRekeyed, CertificateRevoked
from protocol.codec import decode_certificate, decode_signed
from protocol.envelope import Auth
from protocol.events import (
    CertificateReceived,
    KeysRekeyed,
    PeerError,
    ReceiptReceived,
    RedemptionConfirmed,
)
from protocol.messages import RekeyRequest
from protocol.rekey import rekey_request
from tests.support.world import World, events_of, seeded_identity


def test_a_buyer_rekeys_and_its_old_certificate_is_revoked(world: World) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    old = buyer.certified
    assert old is not None
    opened = buyer.open_channel("vendor1", 50, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 4, world.now)
    world.pump()

    new = seeded_identity("buyer1-2")
    buyer.rekey(new, world.now)
    world.pump()

    [rekeyed] = events_of(world, "buyer1", KeysRekeyed)
    assert (rekeyed.old_serial, buyer.identity) == (old.serial, new)
    assert buyer.certified is not None
    assert (buyer.certified.sign_key, buyer.certified.agree_key) == (new.sign_key, new.agree_key)
    assert events_of(world, "buyer1", CertificateReceived)[-1].serial == rekeyed.serial
    decided = world.net.ledger_events("broker")
    assert [type(e) for e in decided[-2:]] == [CertificateRekeyed, CertificateRevoked]
    assert old.serial in vendor.revoked
    assert old.serial in buyer.revoked

    # the old chain ends (the vendor redeems what it holds); a new chain pays
    assert not buyer.channels[opened.commitment_id].payable(1, world.now)
    fresh = buyer.open_channel("vendor1", 50, world.now)
    world.pump()
    buyer.pay(fresh.commitment_id, 6, world.now)
    world.pump()
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 6
    vendor.redeem_all(world.now)
    world.pump()
    assert sum(e.amount for e in events_of(world, "vendor1", RedemptionConfirmed)) == 10
    assert world.broker.totals.debited["buyer1"] == 10


def test_a_lost_answer_is_repeated_with_the_same_certificate(world: World) -> None:
    buyer = world.buyers["buyer1"]
    old_certificate = buyer.certificate
    new = seeded_identity("buyer1-2")
    buyer.rekey(new, world.now)
    world.net.pump(world.now)  # the broker decides; its answer is delivered
    first = buyer.certificate
    assert (
        len([e for e in world.net.ledger_events("broker") if isinstance(e, CertificateRekeyed)])
        == 1
    )
    # A restart that never saw the answer: the same pending keys, asked again, under the
    # pair key of the certificate being replaced.
    stale = type(buyer)(buyer.account, seeded_identity("buyer1"), buyer.broker)
    stale.restore_certificate(old_certificate, world.now)
    world.net.attach(stale, world.now)
    world.now += 1
    stale.rekey(new, world.now)
    world.pump()
    assert stale.certificate == first
    assert (
        len([e for e in world.net.ledger_events("broker") if isinstance(e, CertificateRekeyed)])
        == 0
    )


def test_a_rekey_the_old_key_did_not_authorize_is_refused(world: World) -> None:
    buyer = world.buyers["buyer1"]
    serial = buyer.certified.serial if buyer.certified else 0
    thief = seeded_identity("thief")
    request = rekey_request("buyer1", "broker", serial, thief, seeded_identity("thief-new"))
    buyer.send("broker", request, world.now, auth=Auth.PAIR, key=buyer.broker_key, corr=b"rekey")
    world.pump()
    [refused] = events_of(world, "buyer1", PeerError)
    assert (refused.code, refused.detail) == (
        "rekey",
        "the old key's authorization does not verify",
    )
    assert not [e for e in world.net.ledger_events("broker") if isinstance(e, CertificateRekeyed)]


def test_a_rekey_without_proof_of_the_new_key_is_refused(world: World) -> None:
    buyer = world.buyers["buyer1"]
    good = rekey_request(
        "buyer1",
        "broker",
        buyer.certified.serial if buyer.certified else 0,
        seeded_identity("buyer1"),
        seeded_identity("new"),
    )
    forged = RekeyRequest(
        good.serial,
        seeded_identity("other").sign_key,
        good.agree_key,
        good.proof,
        good.authorization,
    )
    buyer.send("broker", forged, world.now, auth=Auth.PAIR, key=buyer.broker_key, corr=b"rekey")
    world.pump()
    [refused] = events_of(world, "buyer1", PeerError)
    assert refused.detail == "the proof of possession does not verify"


def test_a_vendor_rekeys_and_buyers_open_new_chains_to_it(world: World) -> None:
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    opened = buyer.open_channel("vendor1", 50, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 2, world.now)
    world.pump()
    vendor.rekey(seeded_identity("vendor1-2"), world.now)
    world.pump()
    world.now += 1
    vendor.publish_offer(world.now)  # the shell does this on the new certificate
    world.pump()
    certificate = decode_certificate(decode_signed(vendor.certificate).body)
    assert certificate.sign_key == seeded_identity("vendor1-2").sign_key
    assert not buyer.channels[opened.commitment_id].payable(1, world.now)
    fresh = buyer.open_channel("vendor1", 50, world.now)
    world.pump()
    buyer.pay(fresh.commitment_id, 3, world.now)
    world.pump()
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 3


def test_an_ended_chain_counts_only_what_was_paid_against_the_limit(world: World) -> None:
    """The old chain took the whole credit limit: after the rekey a new one still fits."""
    buyer, vendor = world.enroll_buyer("buyer9", credit_limit=100), world.vendors["vendor1"]
    world.pump()
    assert buyer.certified is not None
    limit = buyer.certified.credit_limit
    whole = buyer.open_channel("vendor1", limit, world.now)
    world.pump()
    buyer.pay(whole.commitment_id, 3, world.now)
    world.pump()
    assert buyer.refusal("vendor1", [limit - 2], "", 3, world.now) is not None  # no room
    assert vendor.exposure("buyer9", world.now) == limit

    buyer.rekey(seeded_identity("buyer9-2"), world.now)
    world.pump()
    assert vendor.exposure("buyer9", world.now) == 3  # the ended chain: only what it holds
    assert buyer.refusal("vendor1", [limit - 3], "", 3, world.now) is None
    fresh = buyer.open_channel("vendor1", limit - 3, world.now)
    world.pump()
    buyer.pay(fresh.commitment_id, 5, world.now)
    world.pump()
    assert events_of(world, "buyer9", ReceiptReceived)[-1].index == 5
    assert not events_of(world, "buyer9", PeerError)
