"""A buyer enrolling a key anyone can sign under, to disown its commitments later.

Under a small-order Ed25519 key OpenSSL accepts signatures nobody's private key made, so
a buyer certified for one could say of every commitment "someone else signed this", and
be right that someone could have. The broker refuses such keys at enrollment, and a
vendor refuses a buyer certificate carrying one (issued before the broker refused them).
"""

from __future__ import annotations

import logging

import pytest

from agents.runtime.loop import log_event
from protocol import topics
from protocol.codec import encode
from protocol.credentials import commitment_id, issue_certificate
from protocol.crypto import TAG_COMMITMENT, MacKey, verify_signature
from protocol.envelope import BROADCAST, Auth, open_body, parse, seal
from protocol.errors import CertificateError, WeakKeyError
from protocol.events import MessageRejected
from protocol.messages import Certificate, Commit, Error, Offer, Signed
from tests.attacks.cores import open_paid_channel, rejected_with, vendor_total
from tests.support.forgery import MALLORY, commitment, enroll, enroll_proof_message, ms
from tests.support.small_order import SMALL_ORDER_ED25519, forge_signature, small_order_x25519
from tests.support.world import World, seeded_identity

ORDER_8 = SMALL_ORDER_ED25519[1]


def test_a_key_anyone_can_sign_under_is_not_enrolled(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    mallory = seeded_identity(MALLORY)
    token = world.net.open_account(world.broker, MALLORY, "buyer", 10**6, "EUR", world.now)
    world.net.ledger_events("broker")
    proof = forge_signature(ORDER_8, enroll_proof_message(MALLORY, ORDER_8, mallory.agree_key))
    # The danger: a signature no private key made passes the protocol's signature check.
    anything = b"a commitment mallory will say she never signed"
    verify_signature(
        ORDER_8, TAG_COMMITMENT, anything, forge_signature(ORDER_8, TAG_COMMITMENT + anything)
    )

    topic, payload, _ = enroll(MALLORY, token, ORDER_8, mallory.agree_key, proof, now=world.now)
    events = world.net.inject("broker", topic, payload, world.now)
    assert rejected_with(list(events), WeakKeyError)
    (answer,) = world.broker.data_to_send()
    assert open_body(parse(answer.payload)) == Error(
        "enrollment", "weak key: signing key is of small order"
    )
    assert not world.net.ledger_events("broker")
    assert not world.broker.accounts[MALLORY].certificate
    with caplog.at_level(logging.WARNING):
        for event in events:
            log_event(event)  # the line every shell writes for a refusal
    assert "from 'mallory': weak key: signing key is of small order (enrollment)" in caplog.text
    assert open_paid_channel(world, units=2)  # the broker goes on serving
    assert vendor_total(world) == 2


def weak_commit(world: World, sign_key: bytes, agree_key: bytes) -> tuple[str, bytes, bytes]:
    """A commit under a certificate the broker signed for weak keys (as it once would have).

    The commitment's signature is forged when ``sign_key`` is of small order: mallory needs
    no private key. The MAC is under a zero key; the vendor never gets that far.
    """
    now_ms = ms(world.now)
    signed_certificate = issue_certificate(
        world.broker.identity,
        Certificate(
            serial=999, subject=MALLORY, role="buyer", sign_key=sign_key, agree_key=agree_key,
            credit_limit=10**6, currency="EUR", not_before=now_ms - 1000,
            not_after=now_ms + 10**9, issuer="broker",
        ),
    )  # fmt: skip
    body = encode(commitment("vendor1", signed_certificate, now_ms, now_ms + 600_000))
    if sign_key in SMALL_ORDER_ED25519:
        signature = forge_signature(sign_key, TAG_COMMITMENT + body)
    else:
        signature = seeded_identity(MALLORY).sign(TAG_COMMITMENT, body)
    cid = commitment_id(body)
    topic = topics.inbox("vendor1", MALLORY)
    payload = seal(
        topic,
        Commit(encode(Signed(body, signature))),
        auth=Auth.CHAIN,
        sender=MALLORY,
        recipient="vendor1",
        counter=1,
        now=world.now,
        key=MacKey(bytes(32)),
        ref=cid,
    )
    return topic, payload, cid


@pytest.mark.parametrize(
    ("weak", "reason"),
    [
        ("sign", "signing key is of small order"),
        ("agree", "agreement key is of small order (X25519 with it is all zero)"),
    ],
)
def test_a_vendor_refuses_a_buyer_certificate_carrying_a_weak_key(
    world: World, weak: str, reason: str
) -> None:
    mallory = seeded_identity(MALLORY)
    sign_key = ORDER_8 if weak == "sign" else mallory.sign_key
    agree_key = small_order_x25519()[2] if weak == "agree" else mallory.agree_key
    topic, payload, cid = weak_commit(world, sign_key, agree_key)
    (event,) = world.net.inject("vendor1", topic, payload, world.now)
    assert isinstance(event, MessageRejected)
    assert isinstance(event.error, CertificateError)
    assert str(event.error) == f"buyer certificate carries a weak key: {reason}"
    assert cid not in world.vendors["vendor1"].chains
    assert not world.vendors["vendor1"].data_to_send()  # unauthenticated: no answer
    assert open_paid_channel(world, units=3)  # an honest buyer is served as before
    assert vendor_total(world) == 3


@pytest.mark.parametrize(
    ("weak", "reason"),
    [
        ("sign", "signing key is of small order"),
        ("agree", "agreement key is of small order (X25519 with it is all zero)"),
    ],
)
def test_a_buyer_refuses_an_offer_from_a_vendor_certified_with_a_weak_key(
    world: World, weak: str, reason: str
) -> None:
    mallory = seeded_identity(MALLORY)
    now_ms = ms(world.now)
    certificate = issue_certificate(
        world.broker.identity,
        Certificate(
            serial=998, subject=MALLORY, role="vendor",
            sign_key=ORDER_8 if weak == "sign" else mallory.sign_key,
            agree_key=small_order_x25519()[2] if weak == "agree" else mallory.agree_key,
            credit_limit=0, currency="EUR", not_before=now_ms - 1000,
            not_after=now_ms + 10**9, issuer="broker",
        ),
    )  # fmt: skip
    offer = Offer(certificate, 1, "EUR", 1000, 100, False, now_ms + 600_000, [])
    topic = topics.public(MALLORY, "offer")
    payload = seal(topic, offer, auth=Auth.SIGNED, sender=MALLORY, recipient=BROADCAST,
                   counter=1, now=world.now, signer=mallory)  # fmt: skip
    (event,) = world.net.inject("buyer1", topic, payload, world.now)
    assert isinstance(event, MessageRejected)
    assert isinstance(event.error, CertificateError)
    assert str(event.error) == f"vendor certificate carries a weak key: {reason}"
    assert MALLORY not in world.buyers["buyer1"].offers
