"""Broker signing-key rotation through the cores, in memory.

The broker rotates while a buyer and a vendor hold certificates from its first key:
both follow the new key from the retained identity alone, old certificates still pay,
new ones name their key, and a rotation that does not chain from the configured key is
refused with ``KeyRotationError``.
"""

from __future__ import annotations

from protocol import topics
from protocol.broker import BrokerCore
from protocol.broker_events import BrokerKeyRotated
from protocol.buyer import BuyerCore
from protocol.codec import decode_certificate, decode_signed, encode
from protocol.crypto import Identity
from protocol.envelope import Auth, seal
from protocol.errors import KeyRotationError
from protocol.events import (
    BrokerKeyAccepted,
    MessageRejected,
    ReceiptReceived,
    RedemptionConfirmed,
)
from protocol.key_rotation import sign_rotation
from protocol.messages import BrokerIdentity, KeyRotation
from tests.support.world import World, events_of, make_world, seeded_identity


def rotate(world: World, label: str) -> tuple[Identity, BrokerKeyRotated]:
    """The broker hands signing to a fresh key and announces it."""
    new = seeded_identity(label)
    event = world.broker.rotate_key(new, from_seq=1, now=world.now)
    world.broker.publish_identity(world.now)
    world.pump()
    return new, event


def pay_and_redeem(world: World, buyer: BuyerCore, units: int) -> int:
    opened = buyer.open_channel("vendor1", 100, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, units, world.now)
    world.pump()
    vendor = world.vendors["vendor1"]
    world.now += vendor.terms.redeem_interval
    vendor.handle_timer(world.now)
    world.pump()
    return world.broker.totals.credited["vendor1"]


def test_agents_follow_a_rotation_and_old_certificates_still_pay() -> None:
    world = make_world()
    first = world.broker.identity.sign_key
    new, event = rotate(world, "broker-2")

    assert (event.sequence, event.old_sign_key, event.new_sign_key) == (1, first, new.sign_key)
    for name in ("buyer1", "vendor1"):
        accepted = events_of(world, name, BrokerKeyAccepted)
        assert [(a.sign_key, a.generation) for a in accepted] == [(new.sign_key, 1)]
    assert world.buyers["buyer1"].broker_keys.current == new.sign_key
    # buyer1's and vendor1's certificates are from the first key, and still good
    assert (
        decode_certificate(decode_signed(world.buyers["buyer1"].certificate).body).issuer_key == b""
    )
    assert pay_and_redeem(world, world.buyers["buyer1"], 7) == 7
    assert not events_of(world, "vendor1", MessageRejected)


def test_a_new_enrollment_gets_a_certificate_naming_the_new_key() -> None:
    world = make_world()
    new, _ = rotate(world, "broker-2")
    buyer = world.enroll_buyer("buyer2")
    certificate = decode_certificate(decode_signed(buyer.certificate).body)
    assert certificate.issuer_key == new.sign_key
    assert pay_and_redeem(world, buyer, 3) == 3  # the vendor, pinned to the first key, accepts it


def test_an_agent_configured_before_two_rotations_follows_both() -> None:
    world = make_world()
    rotate(world, "broker-2")
    third, _ = rotate(world, "broker-3")
    late = BuyerCore("late", seeded_identity("late"), world.buyers["buyer1"].broker)
    world.net.attach(late, world.now)
    world.broker.publish_identity(world.now)
    world.pump()
    assert late.broker_keys.current == third.sign_key
    assert late.broker_keys.generation == 2


def test_a_restarted_agent_trusts_the_kept_history_without_reconfiguration() -> None:
    world = make_world()
    new, _ = rotate(world, "broker-2")
    history = events_of(world, "buyer1", BrokerKeyAccepted)[-1].history
    configured = world.buyers["buyer1"].broker  # the broker.pub.json of before the rotation
    restarted = BuyerCore("buyer1", seeded_identity("buyer1"), configured)
    restarted.restore_broker_keys(history)
    assert restarted.broker_keys.current == new.sign_key
    other = BuyerCore("buyer1", seeded_identity("buyer1"), world.broker.info)  # reconfigured
    assert other.restore_broker_keys(history).current == new.sign_key


def identity_broadcast(broker: BrokerCore, signer: Identity, body: BrokerIdentity) -> bytes:
    topic = topics.public(broker.account, "identity")
    return seal(
        topic,
        body,
        auth=Auth.SIGNED,
        sender=broker.account,
        recipient="*",
        counter=1,
        now=0,
        signer=signer,
    )


def forged_identity(world: World, old: Identity, sequence: int = 1) -> tuple[Identity, bytes]:
    """A rotation to mallory's key, signed by ``old`` (which the agents may not trust)."""
    mallory = seeded_identity("mallory-broker")
    info = world.broker.info
    statement = KeyRotation(info.id, sequence, old.sign_key, mallory.sign_key, info.agree_key, 1, 0)
    signed = sign_rotation(old, mallory, statement)
    body = BrokerIdentity(info.id, mallory.sign_key, info.agree_key, [signed])
    return mallory, identity_broadcast(world.broker, mallory, body)


def deliver(world: World, name: str, payload: bytes) -> list[object]:
    topic = topics.public(world.broker.account, "identity")
    return list(world.net.inject(name, topic, payload, world.now))


def test_a_rotation_signed_by_a_key_nobody_trusts_is_refused() -> None:
    world = make_world()
    _, payload = forged_identity(world, seeded_identity("not-the-broker"))
    events = deliver(world, "vendor1", payload)
    [rejected] = [e for e in events if isinstance(e, MessageRejected)]
    assert isinstance(rejected.error, KeyRotationError)
    assert "does not reach the configured key" in str(rejected.error)
    assert world.vendors["vendor1"].broker_keys.current == world.broker.identity.sign_key


def test_a_history_with_a_gap_is_refused() -> None:
    world = make_world()
    rotate(world, "broker-2")
    # rotation 3 signed by the key in force, but rotation 2 is missing: a gap
    _, payload = forged_identity(world, seeded_identity("broker-2"), sequence=3)
    body_rotations = world.buyers["buyer1"].broker_keys.signed
    events = deliver(world, "buyer1", payload)
    [rejected] = [e for e in events if isinstance(e, MessageRejected)]
    assert isinstance(rejected.error, KeyRotationError)
    assert "gap" in str(rejected.error)
    assert world.buyers["buyer1"].broker_keys.signed == body_rotations


def test_a_forked_rotation_is_refused() -> None:
    world = make_world()
    rotate(world, "broker-2")
    # rotation 1 again, to another key, signed by the first key: a fork
    _, payload = forged_identity(world, seeded_identity("broker"))
    [rejected] = [e for e in deliver(world, "buyer1", payload) if isinstance(e, MessageRejected)]
    assert isinstance(rejected.error, KeyRotationError)
    assert "two different rotations" in str(rejected.error)


def test_an_identity_whose_rotation_the_new_key_did_not_sign_is_refused() -> None:
    world = make_world()
    info = world.broker.info
    first, mallory = seeded_identity("broker"), seeded_identity("mallory-broker")
    statement = KeyRotation(info.id, 1, first.sign_key, mallory.sign_key, info.agree_key, 1, 0)
    good = sign_rotation(first, mallory, statement)
    tampered = type(good)(good.statement, good.old_signature, bytes(64))
    body = BrokerIdentity(info.id, mallory.sign_key, info.agree_key, [tampered])
    payload = identity_broadcast(world.broker, mallory, body)
    [rejected] = [e for e in deliver(world, "buyer1", payload) if isinstance(e, MessageRejected)]
    assert "not signed by the new key" in str(rejected.error)


def test_revocations_signed_by_a_key_not_yet_known_are_adopted_once_it_is() -> None:
    world = make_world()
    buyer = world.buyers["buyer1"]
    new = seeded_identity("broker-2")
    world.broker.rotate_key(new, from_seq=1, now=world.now)
    world.broker.revoke("vendor1", world.now)  # published under the new key...
    revocations = [o for o in world.broker.data_to_send() if o.topic.endswith("/revocations")]
    refused = world.net.inject("buyer1", revocations[-1].topic, revocations[-1].payload, world.now)
    assert any(isinstance(e, MessageRejected) for e in refused)  # ...before the identity
    world.broker.publish_identity(world.now)
    world.pump()
    assert world.vendors["vendor1"].certified is not None
    assert world.vendors["vendor1"].certified.serial in buyer.revoked


def test_the_identity_of_a_broker_that_never_rotated_keeps_its_bytes() -> None:
    world = make_world()
    info = world.broker.info
    body = BrokerIdentity(info.id, info.sign_key, info.agree_key)
    assert encode(body) == encode(BrokerIdentity(info.id, info.sign_key, info.agree_key, []))
    assert len(encode(body)) == 1 + len(info.id) + 1 + 2 * 34


def test_receipts_keep_flowing_after_the_rotation(world: World) -> None:
    rotate(world, "broker-2")
    assert pay_and_redeem(world, world.buyers["buyer1"], 5) == 5
    assert events_of(world, "buyer1", ReceiptReceived)
    assert events_of(world, "vendor1", RedemptionConfirmed)[-1].amount == 5
