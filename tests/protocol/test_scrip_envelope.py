"""The SCRIP envelope (docs/SCHEMES.md 3.4) and the scrip bodies of 3.7.

A scrip payment is MAC'd under the buyer's customer secret; ``ref`` names the vendor
certificate and period the secret derives from. Roles that take no scrip refuse it as
unauthenticated, before anything in it is decoded.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
import pytest

from protocol import topics
from protocol.codec import decode_body, encode, type_name
from protocol.crypto import MacKey
from protocol.endpoint import Endpoint, Outcome
from protocol.envelope import Auth, Parsed, open_body, parse, seal, verify_mac
from protocol.errors import (
    AuthenticationError,
    MalformedMessageError,
    RemoteProtocolError,
    ReplayError,
)
from protocol.events import MessageRejected
from protocol.messages import (
    MESSAGE_TYPES,
    Body,
    Deposit,
    Deposited,
    Minted,
    MintRequest,
    Scrip,
    ScripPaid,
    ScripPayment,
    SignedHead,
)
from protocol.scrip import (
    customer_master,
    customer_secret,
    key_ref,
    period_of,
    scrip_key,
    split_key_ref,
    tag_scrip,
)
from tests.support.world import T0, World, seeded_identity

NOW_MS = int(T0 * 1000)
PERIOD = period_of(NOW_MS)
PAIR = hashlib.sha256(b"test:shop-broker").digest()
SECRET = customer_secret(customer_master(PAIR, "shop", PERIOD), "alice")
REF = key_ref(2, PERIOD)
SCRIP = Scrip("shop", 2, PERIOD, 1, 0, "alice", 1, 100, "EUR", NOW_MS + 86_400_000, [], bytes(16))
TAGGED = tag_scrip(SCRIP, scrip_key(PAIR, "shop", PERIOD))
TOPIC = topics.inbox("shop", "alice")
CORR = (1).to_bytes(8, "big") + (0).to_bytes(4, "big")


def scrip_pay(
    key: bytes | MacKey = SECRET,
    ref: bytes = REF,
    *,
    sender: str = "alice",
    recipient: str = "shop",
) -> bytes:
    return seal(
        topics.inbox(recipient, sender),
        ScripPayment(TAGGED, "article", 30),
        auth=Auth.SCRIP,
        sender=sender,
        recipient=recipient,
        counter=1,
        now=T0,
        key=key if isinstance(key, MacKey) else MacKey(key),
        ref=ref,
        corr=CORR,
    )


def with_ref(payload: bytes, ref: bytes) -> bytes:
    """The same envelope and trailer with another ``ref``: what a forger would try."""
    parsed = parse(payload)
    header = msgspec.structs.replace(parsed.header, ref=ref)
    return bytes([Auth.SCRIP]) + encode(header) + parsed.trailer


# --- the envelope ------------------------------------------------------------------------------


def test_a_scrip_envelope_verifies_under_the_customer_secret() -> None:
    payload = scrip_pay()
    assert payload[0] == int(Auth.SCRIP)
    assert bytes([Auth.SCRIP]) == b"\x04"  # SCHEMES.md 3.4
    parsed = parse(payload)
    verify_mac(parsed, TOPIC, MacKey(SECRET))
    assert split_key_ref(parsed.header.ref) == (2, PERIOD)
    assert open_body(parsed) == ScripPayment(TAGGED, "article", 30)


@pytest.mark.parametrize(
    "other",
    [
        customer_secret(customer_master(PAIR, "shop", PERIOD), "mallory"),
        customer_secret(customer_master(PAIR, "shop", PERIOD + 1), "alice"),
        customer_master(PAIR, "shop", PERIOD),
        scrip_key(PAIR, "shop", PERIOD),
    ],
)
def test_a_scrip_envelope_fails_under_another_secret(other: bytes) -> None:
    with pytest.raises(AuthenticationError):
        verify_mac(parse(scrip_pay()), TOPIC, MacKey(other))


def test_every_altered_byte_fails_the_mac() -> None:
    payload = scrip_pay()
    for position in range(1, len(payload)):
        altered = bytearray(payload)
        altered[position] ^= 0x01
        try:
            parsed = parse(bytes(altered))
        except MalformedMessageError:
            continue  # no longer an envelope at all
        with pytest.raises(AuthenticationError):
            verify_mac(parsed, TOPIC, MacKey(SECRET))


@pytest.mark.parametrize("ref", [key_ref(3, PERIOD), key_ref(2, PERIOD + 1), REF[:11], b""])
def test_an_altered_ref_fails_the_mac(ref: bytes) -> None:
    with pytest.raises(AuthenticationError):
        verify_mac(parse(with_ref(scrip_pay(), ref)), TOPIC, MacKey(SECRET))


def test_the_auth_byte_is_covered_by_the_mac() -> None:
    """The same bytes under CHAIN (the other buyer-vendor MAC) do not verify."""
    payload = scrip_pay()
    as_chain = bytes([Auth.CHAIN]) + payload[1:]
    with pytest.raises(AuthenticationError):
        verify_mac(parse(as_chain), TOPIC, MacKey(SECRET))


@pytest.mark.parametrize("size", [0, 1, 11, 13, 32])
def test_a_ref_of_any_other_size_names_no_key(size: int) -> None:
    with pytest.raises(AuthenticationError):
        split_key_ref(bytes(size))


def test_a_ref_over_the_header_bound_is_malformed() -> None:
    with pytest.raises(MalformedMessageError):
        parse(with_ref(scrip_pay(), bytes(33)))


# --- key selection -------------------------------------------------------------------------------


class ScripTaker(Endpoint[Body]):
    """A role that implements the hook as a vendor will: the secret from ``ref`` and sender."""

    def scrip_message_key(self, parsed: Parsed) -> MacKey:
        serial, period = split_key_ref(parsed.header.ref)
        if serial != 2 or period != PERIOD:
            raise AuthenticationError
        master = customer_master(PAIR, self.account, period)
        return MacKey(customer_secret(master, parsed.header.sender))

    def on_message(self, _parsed: Parsed, body: Body, _key: MacKey, _now: float) -> Outcome[Body]:
        return [body]


def rejected_as_unauthenticated(outcome: list[Any]) -> bool:
    return (
        len(outcome) == 1
        and isinstance(outcome[0], MessageRejected)
        and isinstance(outcome[0].error, AuthenticationError)
    )


def test_a_role_with_the_hook_reads_scrip_payments_keyed_by_ref_and_sender() -> None:
    shop = ScripTaker("shop", seeded_identity("shop"))
    assert shop.receive(TOPIC, scrip_pay(), T0) == [ScripPayment(TAGGED, "article", 30)]
    bob = customer_secret(customer_master(PAIR, "shop", PERIOD), "bob")
    from_bob = shop.receive(topics.inbox("shop", "bob"), scrip_pay(bob, sender="bob"), T0)
    assert from_bob == [ScripPayment(TAGGED, "article", 30)]
    replayed = shop.receive(TOPIC, scrip_pay(), T0)
    assert isinstance(replayed[0], MessageRejected)
    assert isinstance(replayed[0].error, ReplayError)
    for refused in (
        scrip_pay(SECRET, key_ref(2, PERIOD + 1)),  # a period it holds no key for
        scrip_pay(SECRET, key_ref(3, PERIOD)),  # another certificate's
        scrip_pay(SECRET, REF[:11]),
        scrip_pay(bob),  # bob's secret, sent as alice
    ):
        assert rejected_as_unauthenticated(list(shop.receive(TOPIC, refused, T0)))


def test_roles_without_the_hook_refuse_scrip_as_unauthenticated(world: World) -> None:
    """Even under the key each would accept for PAIR: the auth byte picks the key, not the key."""
    vendor, buyer, broker = world.vendors["vendor1"], world.buyers["buyer1"], world.broker
    cases: list[tuple[Endpoint[Any], str, bytes | MacKey]] = [
        (vendor, "buyer1", SECRET),
        (vendor, "broker", vendor.broker_key),
        (buyer, "vendor1", SECRET),
        (buyer, "broker", buyer.broker_key),
        (broker, "buyer1", buyer.broker_key),
        (broker, "vendor1", vendor.broker_key),
    ]
    for core, sender, key in cases:
        payload = scrip_pay(key, sender=sender, recipient=core.account)
        outcome = core.receive(topics.inbox(core.account, sender), payload, world.now)
        assert rejected_as_unauthenticated(list(outcome)), (core.account, sender)
        assert not core.data_to_send()


# --- the bodies ----------------------------------------------------------------------------------

HEAD = SignedHead(7, bytes(32), bytes(64))
REQUEST = bytes(range(16))
BODIES: list[Body] = [
    MintRequest("shop", 100, REQUEST),
    Minted(REQUEST, TAGGED, bytes(32)),
    Minted(REQUEST, TAGGED, bytes(32), HEAD),
    ScripPayment(TAGGED, "", 30),
    ScripPaid(1, 0, 30, b""),
    ScripPaid(1, 0, 30, TAGGED),
    Deposit(TAGGED, "article", 30, TAGGED),
    Deposited(1, 1, 30, 70, TAGGED),
    Deposited(1, 0, 100, 0, b"", HEAD),
]


@pytest.mark.parametrize("body", BODIES, ids=lambda body: type(body).__name__)
def test_every_scrip_body_round_trips(body: Body) -> None:
    assert decode_body(type_name(body), encode(body)) == body


def test_the_scrip_types_are_in_the_registry() -> None:
    assert {
        name: MESSAGE_TYPES[name]
        for name in ("scrip?", "scrip", "scrip-pay", "scrip-paid", "deposit", "deposited")
    } == {
        "scrip?": MintRequest,
        "scrip": Minted,
        "scrip-pay": ScripPayment,
        "scrip-paid": ScripPaid,
        "deposit": Deposit,
        "deposited": Deposited,
    }
    assert all(len(name) <= 16 for name in MESSAGE_TYPES)  # the header's bound on ``type``


TOO_LONG = b"x" * 8193
BAD: list[tuple[str, list[object]]] = [
    ("scrip?", ["s" * 65, 100, REQUEST]),
    ("scrip?", ["shop", 0, REQUEST]),
    ("scrip?", ["shop", 100, REQUEST[:15]]),
    ("scrip?", ["shop", 100, REQUEST + b"x"]),
    ("scrip?", ["shop", 100, REQUEST, None]),
    ("scrip", [REQUEST + b"x", TAGGED, bytes(32), None]),
    ("scrip", [REQUEST, TOO_LONG, bytes(32), None]),
    ("scrip", [REQUEST, TAGGED, bytes(33), None]),
    ("scrip", [REQUEST, TAGGED, bytes(31), None]),
    ("scrip-pay", [TOO_LONG, "", 30]),
    ("scrip-pay", [TAGGED, "i" * 257, 30]),
    ("scrip-pay", [TAGGED, "", 0]),
    ("scrip-pay", [TAGGED, "", 2**63]),
    ("scrip-pay", [TAGGED, ""]),
    ("scrip-paid", [0, 0, 30, b""]),
    ("scrip-paid", [1, 2**32, 30, b""]),
    ("scrip-paid", [1, 0, 30, TOO_LONG]),
    ("scrip-paid", [1, 0, 30, b"", b""]),
    ("deposit", [TOO_LONG, "", 30, b""]),
    ("deposit", [TAGGED, "i" * 257, 30, b""]),
    ("deposit", [TAGGED, "", 30, TOO_LONG]),
    ("deposited", [1, 0, -1, 0, b"", None]),
    ("deposited", [1, 0, 30, 2**63, b"", None]),
    ("deposited", [1, 0, 30, 70, TOO_LONG, None]),
    ("deposited", [1, 0, 30, 70, b"", b"not a head"]),
]


@pytest.mark.parametrize(("kind", "fields"), BAD)
def test_scrip_bodies_refuse_over_long_and_out_of_range_fields(
    kind: str, fields: list[object]
) -> None:
    with pytest.raises(MalformedMessageError):
        decode_body(kind, msgspec.msgpack.encode(fields))


def test_a_scrip_body_is_not_read_as_another() -> None:
    """``scrip-paid`` and ``deposited`` both start with serial and generation."""
    with pytest.raises(RemoteProtocolError):
        decode_body("deposited", encode(ScripPaid(1, 0, 30, b"")))
