"""Weak public keys are refused at enrollment (docs/PROTOCOL.md 11.1), with a clear reason.

The points are computed (``tests/support/small_order.py``), checked here against the values
published in libsodium's blacklists, and each is offered to the broker with a proof of
possession OpenSSL accepts. The broker answers ``Error("enrollment", "weak key: ...")``,
records nothing, and the token stays good for honest keys.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from nacl.bindings import crypto_core_ed25519_is_valid_point

from protocol.broker_events import CertificateIssued
from protocol.buyer import BuyerCore
from protocol.crypto import (
    Identity,
    libsodium_verifies,
    openssl_verifies,
    weak_key_reason,
)
from protocol.envelope import open_body, parse, verify_mac
from protocol.errors import AuthenticationError, WeakKeyError
from protocol.events import CertificateReceived, MessageRejected
from protocol.messages import Body, Enrolled, Error
from tests.support.forgery import enroll, enroll_proof_message
from tests.support.small_order import (
    IDENTITY,
    NON_CANONICAL_SMALL_ORDER_ED25519,
    SMALL_ORDER_ED25519,
    decode,
    forge_signature,
    mixed_order,
    non_canonical_encoding,
    off_curve_encoding,
    scalar_mult,
    small_order_x25519,
    u_doubling_vanishes,
)
from tests.support.world import World, make_world, seeded_identity

HONEST = seeded_identity("honest")
SMALL_ORDER_X25519 = small_order_x25519()
# The order-8 points as libsodium's blacklists list them (ge25519_has_small_order, and
# crypto_scalarmult_curve25519's): the computed points must include them.
PUBLISHED_ED25519 = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"
PUBLISHED_X25519 = (
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
)
SMALL = "signing key is of small order"
X25519_SMALL = "agreement key is of small order (X25519 with it is all zero)"


def hexes(keys: list[bytes]) -> list[str]:
    return [key.hex() for key in keys]


def enroll_by_hand(
    world: World, account: str, sign_key: bytes, agree_key: bytes, proof: bytes
) -> tuple[list[object], Body]:
    """Open a buyer account, send its enrollment; the broker's events and its answer."""
    token = world.net.open_account(world.broker, account, "buyer", 1_000, "EUR", world.now)
    world.net.ledger_events("broker")  # the account opening: persisted already
    topic, payload, key = enroll(account, token, sign_key, agree_key, proof, now=world.now)
    events = list(world.net.inject("broker", topic, payload, world.now))
    (answer,) = world.broker.data_to_send()
    parsed = parse(answer.payload)
    verify_mac(parsed, answer.topic, key)
    return events, open_body(parsed)


def assert_refused(
    world: World, account: str, events: list[object], answer: Body, reason: str
) -> None:
    (rejected,) = events
    assert isinstance(rejected, MessageRejected)
    assert isinstance(rejected.error, WeakKeyError)
    assert rejected.error.code == "enrollment"
    assert answer == Error("enrollment", f"weak key: {reason}")
    assert not world.net.ledger_events("broker")  # nothing recorded
    assert not world.broker.accounts[account].certificate


# --- the points, and what the libraries do with them -------------------------------------------


def test_the_computed_small_order_points_are_the_published_ones() -> None:
    assert len(set(SMALL_ORDER_ED25519)) == 8
    assert SMALL_ORDER_ED25519[0] == (1).to_bytes(32, "little")  # the identity
    for key in SMALL_ORDER_ED25519 + NON_CANONICAL_SMALL_ORDER_ED25519:
        assert scalar_mult(8, decode(key)) == IDENTITY
    assert PUBLISHED_ED25519 in hexes(SMALL_ORDER_ED25519)
    assert len(set(SMALL_ORDER_X25519)) == 14
    assert set(PUBLISHED_X25519) <= set(hexes(SMALL_ORDER_X25519))
    for key in SMALL_ORDER_X25519:
        assert u_doubling_vanishes(int.from_bytes(key, "little") % 2**255)
    assert not u_doubling_vanishes(int.from_bytes(HONEST.agree_key, "little"))


@pytest.mark.parametrize(
    "key", SMALL_ORDER_ED25519 + NON_CANONICAL_SMALL_ORDER_ED25519, ids=bytes.hex
)
def test_openssl_accepts_a_forged_signature_under_a_small_order_key_and_libsodium_does_not(
    key: bytes,
) -> None:
    # Why the key must be refused: the proof of possession proves nothing under it.
    message = enroll_proof_message("mallory", key, HONEST.agree_key)
    forged = forge_signature(key, message)
    assert openssl_verifies(key, message, forged)
    assert not libsodium_verifies(key, message, forged)
    assert not crypto_core_ed25519_is_valid_point(key)


@pytest.mark.parametrize("key", SMALL_ORDER_X25519, ids=bytes.hex)
def test_x25519_with_a_small_order_key_raises_and_is_an_authentication_failure(key: bytes) -> None:
    peer = X25519PublicKey.from_public_bytes(key)  # cryptography loads any 32 bytes
    with pytest.raises(ValueError, match="Error computing shared key"):
        HONEST.agreement.exchange(peer)  # OpenSSL refuses the all-zero secret
    with pytest.raises(AuthenticationError):
        HONEST.shared_secret(key)


# --- weak_key_reason -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sign_key", "agree_key", "reason"),
    [
        (HONEST.sign_key, HONEST.agree_key, None),
        *((key, HONEST.agree_key, SMALL) for key in SMALL_ORDER_ED25519),
        *((key, HONEST.agree_key, SMALL) for key in NON_CANONICAL_SMALL_ORDER_ED25519),
        (non_canonical_encoding(), HONEST.agree_key, "signing key is not canonically encoded"),
        (off_curve_encoding(), HONEST.agree_key, "signing key is not a point on the curve"),
        (
            mixed_order(HONEST.sign_key),
            HONEST.agree_key,
            "signing key is outside the prime-order subgroup",
        ),
        (HONEST.sign_key[:31], HONEST.agree_key, "signing key is not 32 bytes"),
        *((HONEST.sign_key, key, X25519_SMALL) for key in SMALL_ORDER_X25519),
        (SMALL_ORDER_ED25519[0], SMALL_ORDER_X25519[0], SMALL),  # the signing key first
    ],
)
def test_weak_key_reason_names_the_rule_a_key_breaks(
    sign_key: bytes, agree_key: bytes, reason: str | None
) -> None:
    assert weak_key_reason(sign_key, agree_key) == reason


def test_weak_key_reason_accepts_freshly_generated_keys() -> None:
    for _ in range(50):
        fresh = Identity.generate()
        assert weak_key_reason(fresh.sign_key, fresh.agree_key) is None


# --- enrollment ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", SMALL_ORDER_ED25519, ids=bytes.hex)
def test_enrollment_under_each_small_order_signing_key_is_refused(key: bytes) -> None:
    world = make_world(vendors=0, buyers=0)
    message = enroll_proof_message("mallory", key, HONEST.agree_key)
    proof = forge_signature(key, message)
    assert openssl_verifies(key, message, proof)  # the proof check alone would pass it
    events, answer = enroll_by_hand(world, "mallory", key, HONEST.agree_key, proof)
    assert_refused(world, "mallory", events, answer, SMALL)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        *((key, SMALL) for key in NON_CANONICAL_SMALL_ORDER_ED25519),
        (non_canonical_encoding(), "signing key is not canonically encoded"),
        (off_curve_encoding(), "signing key is not a point on the curve"),
        (mixed_order(HONEST.sign_key), "signing key is outside the prime-order subgroup"),
    ],
    ids=lambda value: value.hex() if isinstance(value, bytes) else "",
)
def test_enrollment_under_a_mis_encoded_or_mixed_order_signing_key_is_refused(
    key: bytes, reason: str
) -> None:
    world = make_world(vendors=0, buyers=0)
    message = enroll_proof_message("mallory", key, HONEST.agree_key)
    proof = forge_signature(key, message) if reason == SMALL else HONEST.signing.sign(message)
    events, answer = enroll_by_hand(world, "mallory", key, HONEST.agree_key, proof)
    assert_refused(world, "mallory", events, answer, reason)


@pytest.mark.parametrize("key", SMALL_ORDER_X25519, ids=bytes.hex)
def test_enrollment_with_a_small_order_agreement_key_is_refused(key: bytes) -> None:
    world = make_world(vendors=0, buyers=0)
    proof = HONEST.signing.sign(enroll_proof_message("mallory", HONEST.sign_key, key))
    events, answer = enroll_by_hand(world, "mallory", HONEST.sign_key, key, proof)
    assert_refused(world, "mallory", events, answer, X25519_SMALL)


def test_a_normal_key_enrolls_by_the_same_path() -> None:
    world = make_world(vendors=0, buyers=0)
    message = enroll_proof_message("alice", HONEST.sign_key, HONEST.agree_key)
    events, answer = enroll_by_hand(
        world, "alice", HONEST.sign_key, HONEST.agree_key, HONEST.signing.sign(message)
    )
    assert isinstance(answer, Enrolled)
    assert not [event for event in events if isinstance(event, MessageRejected)]
    (issued,) = world.net.ledger_events("broker")
    assert isinstance(issued, CertificateIssued)
    assert issued.certificate == answer.certificate


def test_after_a_refusal_the_token_still_enrolls_honest_keys() -> None:
    world = make_world(vendors=0, buyers=0)
    key = SMALL_ORDER_ED25519[3]
    proof = forge_signature(key, enroll_proof_message("mallory", key, HONEST.agree_key))
    events, answer = enroll_by_hand(world, "mallory", key, HONEST.agree_key, proof)
    assert_refused(world, "mallory", events, answer, SMALL)
    world.now += 1  # a new counter for the same stream
    mallory = BuyerCore("mallory", seeded_identity("mallory"), world.broker.info)
    world.net.attach(mallory, world.now)
    mallory.enroll(world.broker.enrollment_token("mallory"), world.now)
    world.pump()
    assert [e for e in world.net.events["mallory"] if isinstance(e, CertificateReceived)]
    assert mallory.certified is not None
    assert mallory.certified.sign_key == seeded_identity("mallory").sign_key
