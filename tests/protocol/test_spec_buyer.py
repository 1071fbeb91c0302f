"""Conformance: a buyer written only from docs/PROTOCOL.md pays the reference vendor.

The buyer side (everything above the ``# --- the reference side`` line) uses nothing from
``protocol/``: only MessagePack on plain lists, hashlib, hmac and the cryptography package's
Ed25519, X25519 and HKDF. The ``protocol`` imports serve the reference side alone (the last
test checks that). The broker and the vendor are the real cores, driven by handing bytes to
``receive`` and collecting ``data_to_send``. Seeds and clocks are fixed.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# The reference side only: the buyer below never touches these.
from protocol.broker import BrokerCore
from protocol.crypto import MacKey
from protocol.envelope import Auth
from protocol.events import (
    CommitmentAccepted,
    MessageRejected,
    PaymentAccepted,
    RedemptionConfirmed,
)
from protocol.messages import OfferItem, ScripPaid
from protocol.vendor import VendorCore, VendorTerms
from tests.support.world import SeededRandom, seeded_identity

# --- the spec buyer: constants of docs/PROTOCOL.md sections 3, 7, 10 -----------------------

PREFIX = "micropay/v1"
TAG_CERTIFICATE = b"micropay/v1/certificate\x00"
TAG_COMMITMENT = b"micropay/v1/commitment\x00"
TAG_COMMITMENT_ID = b"micropay/v1/commitment-id\x00"
TAG_ENROLL_PROOF = b"micropay/v1/enroll-proof\x00"
TAG_ENVELOPE = b"micropay/v1/envelope\x00"
TAG_PAYWORD = b"micropay/v1/payword\x00"
INFO_PAIR = b"micropay/v1/pair-key\x00"
INFO_CHAIN = b"micropay/v1/chain-key\x00"
INFO_TOKEN = b"micropay/v1/token-key\x00"

PAIR, TOKEN, CHAIN, SIGNED, SCRIP = 0, 1, 2, 3, 4
MAC_SIZE, SIGNATURE_SIZE = 32, 64
MAX_MESSAGE_SIZE = 65_536
MAX_SKEW_MS = 120_000
REPLAY_WINDOW = 1024
VERSION = 1


class SpecError(Exception):
    """The spec buyer refuses a message."""


# --- typed views of decoded MessagePack ------------------------------------------------------


def as_list(value: object, size: int) -> list[object]:
    if not isinstance(value, list) or len(value) != size:
        raise SpecError(f"expected an array of {size}")
    return value


def as_array(value: object) -> list[object]:
    if not isinstance(value, list):
        raise SpecError("expected an array")
    return value


def as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError("expected an int")
    return value


def as_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise SpecError("expected a bool")
    return value


def as_bytes(value: object, size: int | None = None) -> bytes:
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        raise SpecError("expected bin")
    return value


def as_str(value: object) -> str:
    if not isinstance(value, str):
        raise SpecError("expected a str")
    return value


def unpack(data: bytes) -> object:
    decoded: object = msgspec.msgpack.decode(data)
    return decoded


def pack(value: object) -> bytes:
    return msgspec.msgpack.encode(value)


# --- primitives: sections 2, 4 ----------------------------------------------------------------


def lp(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    assert len(raw) <= 255
    return bytes([len(raw)]) + raw


def hkdf32(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def x25519(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    if shared == bytes(32):
        raise SpecError("low-order peer key")
    return shared


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature as exc:
        raise SpecError("bad signature") from exc


def raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def step(word: bytes, index: int) -> bytes:
    """From w_index to w_{index-1}."""
    return hashlib.sha256(TAG_PAYWORD + index.to_bytes(4, "big") + word).digest()


def build_chain(seed: bytes, length: int) -> list[bytes]:
    """``words[i]`` is w_i; ``words[length]`` is the seed."""
    words = [b""] * (length + 1)
    words[length] = seed
    for index in range(length, 0, -1):
        words[index - 1] = step(words[index], index)
    return words


def ms(now: float) -> int:
    return int(now * 1000)


def inbox(recipient: str, sender: str) -> str:
    return f"{PREFIX}/in/{recipient}/{sender}"


def topic_prefix(topic: str) -> bytes:
    raw = topic.encode()
    return len(raw).to_bytes(2, "big") + raw


# --- the envelope: section 7 ------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """Section 7.2, fields in wire order."""

    type: str
    sender: str
    recipient: str
    ref: bytes
    counter: int
    timestamp: int
    corr: bytes
    body: bytes
    version: int = VERSION

    def to_wire(self) -> list[object]:
        return [
            self.version,
            self.type,
            self.sender,
            self.recipient,
            self.ref,
            self.counter,
            self.timestamp,
            self.corr,
            self.body,
        ]


@dataclass(frozen=True)
class Opened:
    """An authenticated envelope and its decoded body."""

    auth: int
    header: Header
    body: list[object]


def seal_mac(topic: str, auth: int, header: Header, key: bytes) -> bytes:
    signed_part = bytes([auth]) + pack(header.to_wire())
    tag = hmac.new(key, topic_prefix(topic) + signed_part, hashlib.sha256).digest()
    return signed_part + tag


def split(payload: bytes) -> tuple[int, Header, bytes, bytes]:
    """Steps 1-3 of section 9: size, auth byte, strict header decode."""
    if not payload or len(payload) > MAX_MESSAGE_SIZE:
        raise SpecError("size")
    auth = payload[0]
    if auth not in (PAIR, TOKEN, CHAIN, SIGNED, SCRIP):
        raise SpecError("auth byte")
    trailer_size = SIGNATURE_SIZE if auth == SIGNED else MAC_SIZE
    if len(payload) < 1 + trailer_size + 1:
        raise SpecError("short")
    signed_part, trailer = payload[:-trailer_size], payload[-trailer_size:]
    fields = as_list(unpack(signed_part[1:]), 9)
    header = Header(
        version=as_int(fields[0]),
        type=as_str(fields[1]),
        sender=as_str(fields[2]),
        recipient=as_str(fields[3]),
        ref=as_bytes(fields[4]),
        counter=as_int(fields[5]),
        timestamp=as_int(fields[6]),
        corr=as_bytes(fields[7]),
        body=as_bytes(fields[8]),
    )
    return auth, header, signed_part, trailer


class Window:
    """Section 10.2: the highest counter and the 1024 below it."""

    def __init__(self) -> None:
        self.highest: int | None = None
        self.seen: set[int] = set()

    def check(self, counter: int) -> None:
        if self.highest is None or counter > self.highest:
            self.highest = counter
            self.seen = {c for c in self.seen if counter - c < REPLAY_WINDOW} | {counter}
            return
        if self.highest - counter >= REPLAY_WINDOW or counter in self.seen:
            raise SpecError("replay")
        self.seen.add(counter)


# --- signed objects: section 5 ----------------------------------------------------------------


@dataclass(frozen=True)
class Cert:
    serial: int
    subject: str
    role: str
    sign_key: bytes
    agree_key: bytes
    credit_limit: int
    currency: str
    not_before: int
    not_after: int
    issuer: str


def verify_certificate(
    signed: bytes, broker_id: str, broker_sign_key: bytes, at_ms: int, role: str
) -> Cert:
    wrapper = as_list(unpack(signed), 2)
    body, signature = as_bytes(wrapper[0]), as_bytes(wrapper[1], SIGNATURE_SIZE)
    ed25519_verify(broker_sign_key, TAG_CERTIFICATE + body, signature)
    f = as_list(unpack(body), 10)
    cert = Cert(
        serial=as_int(f[0]),
        subject=as_str(f[1]),
        role=as_str(f[2]),
        sign_key=as_bytes(f[3], 32),
        agree_key=as_bytes(f[4], 32),
        credit_limit=as_int(f[5]),
        currency=as_str(f[6]),
        not_before=as_int(f[7]),
        not_after=as_int(f[8]),
        issuer=as_str(f[9]),
    )
    if cert.issuer != broker_id or cert.role != role:
        raise SpecError("certificate issuer or role")
    if not cert.not_before <= at_ms <= cert.not_after:
        raise SpecError("certificate not valid")
    return cert


@dataclass(frozen=True)
class VendorOffer:
    vendor: str
    cert: Cert
    unit_value: int
    currency: str
    max_length: int
    max_jump: int
    online: bool
    valid_until: int
    items: list[tuple[str, int]]


@dataclass
class Channel:
    cid: bytes
    vendor: str
    words: list[bytes]
    commit_signed: bytes
    unit_value: int
    max_jump: int
    key: bytes
    spent: int = 0
    acknowledged: int = -1


@dataclass
class SpecBuyer:
    """A buyer that knows only docs/PROTOCOL.md."""

    account: str
    sign_seed: bytes
    agree_seed: bytes
    broker_id: str
    broker_sign_key: bytes
    broker_agree_key: bytes
    signing: Ed25519PrivateKey = field(init=False)
    agreement: X25519PrivateKey = field(init=False)
    token_key: bytes | None = None
    certificate: bytes = b""
    cert: Cert | None = None
    offers: dict[str, VendorOffer] = field(default_factory=dict)
    offer_times: dict[str, int] = field(default_factory=dict)
    revoked: frozenset[int] = frozenset()
    channels: dict[bytes, Channel] = field(default_factory=dict)
    counters: dict[tuple[str, int, bytes], int] = field(default_factory=dict)
    windows: dict[tuple[str, int, bytes], Window] = field(default_factory=dict)
    # customer secrets by (vendor, ref), as docs/SCHEMES.md 3.3 delivers them
    scrip_secrets: dict[tuple[str, bytes], bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.signing = Ed25519PrivateKey.from_private_bytes(self.sign_seed)
        self.agreement = X25519PrivateKey.from_private_bytes(self.agree_seed)

    @property
    def sign_key(self) -> bytes:
        return raw_public(self.signing)

    @property
    def agree_key(self) -> bytes:
        return raw_public(self.agreement)

    @property
    def pair_key(self) -> bytes:
        first, second = sorted((self.account.encode(), self.broker_id.encode()))
        shared = x25519(self.agreement, self.broker_agree_key)
        return hkdf32(shared, b"", INFO_PAIR + lp(first) + lp(second))

    # --- sending ------------------------------------------------------------------------------

    def _counter(self, recipient: str, auth: int, ref: bytes, now: float) -> int:
        stream = (recipient, auth, ref)
        last = self.counters.get(stream)
        value = int(now * 1_000_000) if last is None else last + 1
        self.counters[stream] = value
        return value

    def _send(  # noqa: PLR0913 - one argument per header field
        self,
        recipient: str,
        msg_type: str,
        body: list[object],
        now: float,
        auth: int,
        key: bytes,
        ref: bytes = b"",
        corr: bytes = b"",
    ) -> tuple[str, bytes]:
        topic = inbox(recipient, self.account)
        header = Header(
            type=msg_type,
            sender=self.account,
            recipient=recipient,
            ref=ref,
            counter=self._counter(recipient, auth, ref, now),
            timestamp=ms(now),
            corr=corr,
            body=pack(body),
        )
        return topic, seal_mac(topic, auth, header, key)

    def enroll(self, token: bytes, now: float) -> tuple[str, bytes]:
        """Section 11.1, steps 1-3."""
        self.token_key = hkdf32(token, b"", INFO_TOKEN + lp(self.account))
        proof_data = lp(self.account) + lp(self.broker_id) + self.sign_key + self.agree_key
        proof = self.signing.sign(TAG_ENROLL_PROOF + proof_data)
        body: list[object] = [self.sign_key, self.agree_key, proof]
        return self._send(self.broker_id, "enroll", body, now, TOKEN, self.token_key)

    def query(self, msg_type: str, now: float, corr: bytes) -> tuple[str, bytes]:
        """``balance?`` or ``invoice?`` (section 11.9)."""
        return self._send(self.broker_id, msg_type, [], now, PAIR, self.pair_key, corr=corr)

    def open_channel(
        self, vendor: str, seed: bytes, length: int, now: float, unit_value: int | None = None
    ) -> Channel:
        """Section 11.4, steps 1-5 (``unit_value`` overrides the offer's, to test refusals)."""
        assert self.cert is not None
        offer = self.offers[vendor]
        value = offer.unit_value if unit_value is None else unit_value
        assert length <= offer.max_length
        words = build_chain(seed, length)
        not_after = min(ms(now + 86_400), self.cert.not_after)
        commitment = pack(
            [
                vendor,
                self.certificate,
                words[0],
                length,
                value,
                offer.currency,
                ms(now),
                not_after,
            ]
        )
        signature = self.signing.sign(TAG_COMMITMENT + commitment)
        cid = hashlib.sha256(TAG_COMMITMENT_ID + commitment).digest()
        shared = x25519(self.agreement, offer.cert.agree_key)
        key = hkdf32(shared, cid, INFO_CHAIN + lp(self.account) + lp(vendor))
        channel = Channel(
            cid, vendor, words, pack([commitment, signature]), value, offer.max_jump, key
        )
        self.channels[cid] = channel
        return channel

    def commit(self, channel: Channel, now: float) -> tuple[str, bytes]:
        """Section 11.4, step 6."""
        body: list[object] = [channel.commit_signed]
        return self._send(channel.vendor, "commit", body, now, CHAIN, channel.key, channel.cid)

    def payment(
        self, channel: Channel, index: int, word: bytes, now: float, item: str = ""
    ) -> tuple[str, bytes]:
        """One ``pay`` message, exactly as given (no rules applied)."""
        body: list[object] = [channel.cid, index, word, item]
        corr = index.to_bytes(8, "big")
        return self._send(channel.vendor, "pay", body, now, CHAIN, channel.key, channel.cid, corr)

    def pay(
        self, channel: Channel, units: int, now: float, item: str = ""
    ) -> list[tuple[str, bytes]]:
        """Section 11.6, buyer side: cumulative indices, split at ``max_jump``."""
        target = channel.spent + units
        assert units >= 1
        assert target < len(channel.words), "never pay beyond w_n"
        out = []
        while channel.spent < target:
            channel.spent = min(channel.spent + channel.max_jump, target)
            last = channel.spent == target
            word = channel.words[channel.spent]
            out.append(self.payment(channel, channel.spent, word, now, item if last else ""))
        return out

    # --- receiving: section 9 -----------------------------------------------------------------

    def read_broker_broadcast(self, topic: str, payload: bytes) -> tuple[str, list[object]]:
        """A retained broadcast signed by the broker (``identity``, ``revocations``)."""
        auth, header, signed_part, trailer = split(payload)
        parts = topic.split("/")
        if auth != SIGNED or len(parts) != 5 or parts[:3] != ["micropay", "v1", "pub"]:
            raise SpecError("auth")
        if parts[3] != header.sender or header.sender != self.broker_id:
            raise SpecError("auth")
        if header.recipient != "*":
            raise SpecError("auth")
        sig_input = TAG_ENVELOPE + topic_prefix(topic) + signed_part
        ed25519_verify(self.broker_sign_key, sig_input, trailer)
        return header.type, as_array(unpack(header.body))

    def read_offer(self, topic: str, payload: bytes, now: float) -> VendorOffer:
        """A retained ``offer`` broadcast (sections 9, 10.3 and 11.3)."""
        auth, header, signed_part, trailer = split(payload)
        parts = topic.split("/")
        if auth != SIGNED or len(parts) != 5 or parts[:3] != ["micropay", "v1", "pub"]:
            raise SpecError("auth")
        if parts[3] != header.sender or header.recipient != "*" or header.type != "offer":
            raise SpecError("auth")
        f = as_list(unpack(header.body), 8)
        cert = verify_certificate(
            as_bytes(f[0]), self.broker_id, self.broker_sign_key, ms(now), "vendor"
        )
        if cert.serial in self.revoked or cert.subject != header.sender:
            raise SpecError("auth")
        ed25519_verify(cert.sign_key, TAG_ENVELOPE + topic_prefix(topic) + signed_part, trailer)
        if as_int(f[6]) < ms(now):
            raise SpecError("offer expired")
        known = self.offer_times.get(header.sender)
        if known is not None and known >= header.timestamp:
            return self.offers[header.sender]
        items = [as_list(item, 2) for item in as_array(f[7])]
        offer = VendorOffer(
            vendor=header.sender,
            cert=cert,
            unit_value=as_int(f[1]),
            currency=as_str(f[2]),
            max_length=as_int(f[3]),
            max_jump=as_int(f[4]),
            online=as_bool(f[5]),
            valid_until=as_int(f[6]),
            items=[(as_str(item[0]), as_int(item[1])) for item in items],
        )
        self.offers[header.sender] = offer
        self.offer_times[header.sender] = header.timestamp
        return offer

    def receive(self, topic: str, payload: bytes, now: float) -> Opened:
        """A point-to-point message, checked in the order of section 9."""
        auth, header, signed_part, trailer = split(payload)
        self._check_addressing(topic, auth, header)
        key = self._key_for(auth, header)
        expected = hmac.new(key, topic_prefix(topic) + signed_part, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, trailer):
            raise SpecError("auth")
        if abs(header.timestamp - ms(now)) > MAX_SKEW_MS:
            raise SpecError("stale")
        self.windows.setdefault((header.sender, auth, header.ref), Window()).check(header.counter)
        return Opened(auth, header, as_array(unpack(header.body)))

    def _check_addressing(self, topic: str, auth: int, header: Header) -> None:
        """Step 4: ``micropay/v1/in/<me>/<sender>``, agreeing with the header."""
        parts = topic.split("/")
        if len(parts) != 5 or parts[:3] != ["micropay", "v1", "in"] or auth == SIGNED:
            raise SpecError("auth")
        if parts[3] != self.account or header.recipient != self.account:
            raise SpecError("auth")
        if parts[4] != header.sender:
            raise SpecError("auth")

    def _key_for(self, auth: int, header: Header) -> bytes:
        """Step 5: the key of ``ref`` (chain key, customer secret), or the broker's."""
        if auth == SCRIP:
            secret = self.scrip_secrets.get((header.sender, header.ref))
            if secret is None:
                raise SpecError("auth")
            return secret
        if auth == CHAIN:
            channel = self.channels.get(header.ref)
            if channel is None or channel.vendor != header.sender:
                raise SpecError("auth")
            return channel.key
        if header.sender != self.broker_id:
            raise SpecError("auth")
        if auth == PAIR:
            return self.pair_key
        if auth == TOKEN and self.token_key is not None:
            return self.token_key
        raise SpecError("auth")

    def enrolled(self, opened: Opened, now: float) -> Cert:
        """Section 11.1, step 5."""
        assert opened.auth == TOKEN
        assert opened.header.type == "enrolled"
        signed = as_bytes(as_list(opened.body, 1)[0])
        cert = verify_certificate(signed, self.broker_id, self.broker_sign_key, ms(now), "buyer")
        if cert.subject != self.account or (cert.sign_key, cert.agree_key) != (
            self.sign_key,
            self.agree_key,
        ):
            raise SpecError("certificate is not ours")
        self.certificate, self.cert, self.token_key = signed, cert, None
        return cert

    def receipt(self, opened: Opened) -> tuple[int, int]:
        """Section 11.7: a cumulative receipt on a chain."""
        assert opened.auth == CHAIN
        assert opened.header.type == "receipt"
        channel = self.channels[opened.header.ref]
        f = as_list(opened.body, 3)
        if as_bytes(f[0], 32) != channel.cid:
            raise SpecError("receipt for another chain")
        index, amount = as_int(f[1]), as_int(f[2])
        assert amount == index * channel.unit_value
        channel.acknowledged = max(channel.acknowledged, index)
        return index, amount

    def error(self, opened: Opened) -> tuple[str, str]:
        """Section 12: an ``Error`` body."""
        assert opened.header.type == "error"
        f = as_list(opened.body, 2)
        return as_str(f[0]), as_str(f[1])


# --- the reference side: the real broker and vendor cores ------------------------------------

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
BROKER, VENDOR, BUYER = "broker", "vendor1", "spec-buyer"
UNIT_VALUE, MAX_JUMP, CHAIN_LENGTH = 3, 50, 1000
TERMS = VendorTerms(
    unit_value=UNIT_VALUE,
    currency="EUR",
    max_length=10_000,
    max_jump=MAX_JUMP,
    items=(OfferItem("article", 5), OfferItem("minute", 2)),
)
Message = tuple[str, bytes]


@dataclass
class Reference:
    """The real broker and vendor, wired by topic; messages for the buyer are collected."""

    broker: BrokerCore
    vendor: VendorCore
    retained: dict[str, bytes] = field(default_factory=dict)
    to_buyer: list[Message] = field(default_factory=list)
    events: list[object] = field(default_factory=list)

    def deliver(self, topic: str, payload: bytes, now: float) -> list[object]:
        recipient = topic.split("/")[3]
        if recipient == BROKER:
            events: list[object] = list(self.broker.receive(topic, payload, now))
        elif recipient == VENDOR:
            events = list(self.vendor.receive(topic, payload, now))
        else:
            self.to_buyer.append((topic, payload))
            return []
        self.events.extend(events)
        return events

    def pump(self, now: float) -> None:
        while batch := [*self.broker.data_to_send(), *self.vendor.data_to_send()]:
            for out in batch:
                if out.topic.startswith(f"{PREFIX}/pub/"):
                    self.retained[out.topic] = out.payload
                    if out.topic.startswith(f"{PREFIX}/pub/{BROKER}/"):
                        self.events.extend(self.vendor.receive(out.topic, out.payload, now))
                else:
                    self.deliver(out.topic, out.payload, now)

    def rejections(self) -> list[MessageRejected]:
        return [e for e in self.events if isinstance(e, MessageRejected)]

    def take(self, kind: type[object]) -> list[object]:
        found = [e for e in self.events if isinstance(e, kind)]
        self.events = [e for e in self.events if not isinstance(e, kind)]
        return found


def make_reference() -> Reference:
    broker = BrokerCore(BROKER, seeded_identity(BROKER), random=SeededRandom(BROKER))
    vendor = VendorCore(VENDOR, seeded_identity(VENDOR), broker.info, TERMS)
    ref = Reference(broker, vendor)
    broker.publish_identity(T0)
    ref.pump(T0)
    broker.open_account(VENDOR, "vendor", 0, "EUR", T0)
    vendor.enroll(broker.enrollment_token(VENDOR), T0)
    ref.pump(T0)
    assert vendor.certificate
    vendor.publish_offer(T0)
    ref.pump(T0)
    assert ref.rejections() == []
    return ref


def make_buyer(ref: Reference) -> SpecBuyer:
    info = ref.broker.info
    return SpecBuyer(
        BUYER,
        hashlib.sha256(b"spec-buyer sign seed").digest(),
        hashlib.sha256(b"spec-buyer agree seed").digest(),
        info.id,
        info.sign_key,
        info.agree_key,
    )


def exchange(ref: Reference, buyer: SpecBuyer, messages: list[Message], now: float) -> list[Opened]:
    """Hand the buyer's messages to the reference side, run it, open every answer."""
    for topic, payload in messages:
        ref.deliver(topic, payload, now)
    ref.pump(now)
    answers, ref.to_buyer = ref.to_buyer, []
    return [buyer.receive(topic, payload, now) for topic, payload in answers]


def enroll(ref: Reference, buyer: SpecBuyer, now: float) -> None:
    ref.broker.open_account(BUYER, "buyer", 1_000_000, "EUR", now)
    token = ref.broker.enrollment_token(BUYER)
    (answer,) = exchange(ref, buyer, [buyer.enroll(token, now)], now)
    cert = buyer.enrolled(answer, now)
    assert (cert.subject, cert.role, cert.currency, cert.credit_limit) == (
        BUYER,
        "buyer",
        "EUR",
        1_000_000,
    )
    first = buyer.certificate
    # A retried enrollment with the same keys gets the same certificate back.
    (again,) = exchange(ref, buyer, [buyer.enroll(token, now + 0.5)], now + 0.5)
    buyer.enrolled(again, now + 0.5)
    assert buyer.certificate == first
    assert ref.rejections() == []


def query(ref: Reference, buyer: SpecBuyer, msg_type: str, corr: bytes, now: float) -> list[object]:
    (answer,) = exchange(ref, buyer, [buyer.query(msg_type, now, corr)], now)
    assert answer.auth == PAIR
    assert answer.header.corr == corr
    assert answer.header.type == msg_type.rstrip("?")
    return answer.body


def expect_receipt(answers: list[Opened], buyer: SpecBuyer, index: int) -> None:
    assert len(answers) == 1, "receipts are coalesced: one per chain per flush"
    assert answers[0].header.type == "receipt"
    assert buyer.receipt(answers[0]) == (index, index * UNIT_VALUE)


def expect_error(answers: list[Opened], buyer: SpecBuyer, channel: Channel, code: str) -> None:
    assert len(answers) == 1
    (answer,) = answers
    assert (answer.auth, answer.header.ref) == (CHAIN, channel.cid)
    assert buyer.error(answer)[0] == code


def redeem(ref: Reference, now: float) -> int:
    ref.vendor.redeem_all(now)
    ref.pump(now)
    assert ref.rejections() == []
    (confirmed,) = ref.take(RedemptionConfirmed)
    assert isinstance(confirmed, RedemptionConfirmed)
    return confirmed.amount


# --- the tests --------------------------------------------------------------------------------


def test_spec_buyer_reads_the_broker_identity() -> None:
    ref = make_reference()
    buyer = make_buyer(ref)
    topic = f"{PREFIX}/pub/{BROKER}/identity"
    msg_type, body = buyer.read_broker_broadcast(topic, ref.retained[topic])
    info = ref.broker.info
    assert (msg_type, body) == ("identity", [info.id, info.sign_key, info.agree_key])


def test_spec_buyer_pays_the_reference_vendor() -> None:  # noqa: PLR0915 - one whole flow
    ref = make_reference()
    buyer = make_buyer(ref)
    now = T0 + 1
    enroll(ref, buyer, now)

    offer = buyer.read_offer(
        f"{PREFIX}/pub/{VENDOR}/offer", ref.retained[f"{PREFIX}/pub/{VENDOR}/offer"], now
    )
    assert (offer.unit_value, offer.currency, offer.max_jump, offer.online) == (
        UNIT_VALUE,
        "EUR",
        MAX_JUMP,
        False,
    )
    assert offer.items == [("article", 5), ("minute", 2)]
    # Balance: debited, credited, reserved, ledger head, then the credit limit and revocation.
    balance = query(ref, buyer, "balance?", b"q1", now)
    assert balance == [BUYER, "EUR", 0, 0, 0, None, 1_000_000, False]

    # Commit: accepted off-line, acknowledged by a receipt for index 0.
    now += 1
    seed = hashlib.sha256(b"spec-buyer chain seed").digest()
    channel = buyer.open_channel(VENDOR, seed, CHAIN_LENGTH, now)
    expect_receipt(exchange(ref, buyer, [buyer.commit(channel, now)], now), buyer, 0)
    assert len(ref.take(CommitmentAccepted)) == 1

    # Payments with mixed jumps; jumps above max_jump go out as several payments.
    last: Message | None = None
    for units in (1, 1, 5, 50, 120, 7, 200, 3):
        now += 0.5
        before = channel.spent
        item = "article" if units * UNIT_VALUE >= 5 else ""  # an article costs 5
        messages = buyer.pay(channel, units, now, item=item)
        assert len(messages) == -(-units // MAX_JUMP)
        expect_receipt(exchange(ref, buyer, messages, now), buyer, before + units)
        accepted = ref.take(PaymentAccepted)
        assert sum(e.units for e in accepted if isinstance(e, PaymentAccepted)) == units
        last = messages[-1]
    assert ref.rejections() == []
    spent = channel.spent
    assert spent == 387

    # An exact duplicate of the last payword is acknowledged again, and nothing more.
    now += 0.5
    duplicate = buyer.payment(channel, spent, channel.words[spent], now)
    expect_receipt(exchange(ref, buyer, [duplicate], now), buyer, spent)
    assert ref.take(PaymentAccepted) == []

    # The same bytes again are a replay: dropped without an answer.
    assert last is not None
    assert exchange(ref, buyer, [last], now) == []
    assert [r.error.code for r in ref.rejections()] == ["replay"]
    ref.events.clear()

    # Refused payments, each answered with an authenticated "payment" error.
    words = channel.words
    refused = [
        (spent - 1, words[spent - 1]),  # i < j
        (spent, words[spent - 1]),  # i == j, but not the word held
        (spent + MAX_JUMP + 1, words[spent + MAX_JUMP + 1]),  # jump above max_jump
        (CHAIN_LENGTH + 1, bytes(32)),  # beyond the chain
        (spent + 2, words[spent + 3]),  # does not hash down to w_j
    ]
    for index, word in refused:
        now += 0.5
        answers = exchange(ref, buyer, [buyer.payment(channel, index, word, now)], now)
        expect_error(answers, buyer, channel, "payment")
        assert answers[0].header.corr == index.to_bytes(8, "big")
    assert ref.take(PaymentAccepted) == []
    ref.events.clear()

    # A payment that names an item must name one on offer and cover its price (rule 9):
    # an "item" error, and nothing changes. One unit of 3 does not pay a 5 article.
    for index, item in ((spent + 1, "pizza"), (spent + 1, "article")):
        now += 0.5
        answers = exchange(
            ref, buyer, [buyer.payment(channel, index, words[index], now, item)], now
        )
        expect_error(answers, buyer, channel, "item")
        assert answers[0].header.corr == index.to_bytes(8, "big")
    assert ref.take(PaymentAccepted) == []
    ref.events.clear()

    # The vendor redeems; the broker credits exactly what the buyer paid.
    now += 1
    assert redeem(ref, now) == spent * UNIT_VALUE
    assert ref.broker.totals.credited[VENDOR] == spent * UNIT_VALUE
    assert ref.broker.totals.debited[BUYER] == spent * UNIT_VALUE

    # More payments, redeemed again: only the excess is credited.
    for units in (10, 60):
        now += 0.5
        expect_receipt(
            exchange(ref, buyer, buyer.pay(channel, units, now), now), buyer, channel.spent
        )
    now += 1
    paid = channel.spent * UNIT_VALUE
    assert redeem(ref, now) == paid
    assert ref.broker.totals.credited[VENDOR] == paid
    assert ref.broker.totals.debited[BUYER] == paid

    balance = query(ref, buyer, "balance?", b"q2", now)
    assert balance == [BUYER, "EUR", paid, 0, 0, None, 1_000_000, False]
    invoice = query(ref, buyer, "invoice?", b"q3", now)
    assert invoice == [BUYER, "EUR", [[VENDOR, channel.spent, paid]], paid]

    # A retransmitted commit is answered with a receipt for the current index.
    now += 0.5
    expect_receipt(exchange(ref, buyer, [buyer.commit(channel, now)], now), buyer, channel.spent)
    assert ref.rejections() == []


def test_spec_buyer_commitment_outside_the_terms_is_refused() -> None:
    ref = make_reference()
    buyer = make_buyer(ref)
    now = T0 + 1
    enroll(ref, buyer, now)
    offer_topic = f"{PREFIX}/pub/{VENDOR}/offer"
    buyer.read_offer(offer_topic, ref.retained[offer_topic], now)
    seed = hashlib.sha256(b"spec-buyer other seed").digest()
    channel = buyer.open_channel(VENDOR, seed, 10, now, unit_value=UNIT_VALUE + 1)
    answers = exchange(ref, buyer, [buyer.commit(channel, now)], now)
    expect_error(answers, buyer, channel, "commitment")
    assert ref.take(CommitmentAccepted) == []


def load_vector(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (Path(__file__).parent.parent / "vectors" / f"{name}.json").read_text()
    )
    return data


def hex_field(data: dict[str, object], *path: str) -> bytes:
    value: object = data
    for key in path:
        assert isinstance(value, dict)
        value = value[key]
    assert isinstance(value, str)
    return bytes.fromhex(value)


def test_spec_buyer_selects_a_scrip_key_as_section_9_says() -> None:
    """Auth byte 4 passes step 2; step 5 wants the customer secret of (sender, ref)."""
    ref = make_reference()
    buyer = make_buyer(ref)
    now = T0 + 1
    secret, key_ref = hashlib.sha256(b"a customer secret").digest(), bytes(11) + b"\x07"
    ref.vendor.send(BUYER, ScripPaid(1, 0, 5, b""), now, auth=Auth.SCRIP, key=MacKey(secret),
                    ref=key_ref, corr=b"c")  # fmt: skip
    ((topic, payload),) = [(o.topic, o.payload) for o in ref.vendor.data_to_send()]
    assert payload[0] == SCRIP
    with pytest.raises(SpecError, match=r"^auth$"):  # no secret held: step 5, not step 2
        buyer.receive(topic, payload, now)
    buyer.scrip_secrets[VENDOR, bytes(12)] = secret  # another ref names another secret
    with pytest.raises(SpecError, match=r"^auth$"):
        buyer.receive(topic, payload, now)
    buyer.scrip_secrets[VENDOR, key_ref] = secret
    opened = buyer.receive(topic, payload, now)
    assert (opened.auth, opened.header.type, opened.body) == (SCRIP, "scrip-paid", [1, 0, 5, b""])


def test_spec_primitives_reproduce_the_golden_vectors() -> None:
    """Keys, chain, commitment id and both envelopes, from the spec's rules alone."""
    keys, chain = load_vector("keys"), load_vector("chain")
    commitment, payment, redemption = (
        load_vector("commitment"),
        load_vector("payment"),
        load_vector("redemption"),
    )
    alice, shop, broker = "alice (buyer)", "shop (vendor)", "broker"
    alice_agree = X25519PrivateKey.from_private_bytes(hex_field(keys, alice, "agree_seed"))
    shop_agree = X25519PrivateKey.from_private_bytes(hex_field(keys, shop, "agree_seed"))
    assert raw_public(alice_agree) == hex_field(keys, alice, "agree_key")
    alice_sign = Ed25519PrivateKey.from_private_bytes(hex_field(keys, alice, "sign_seed"))
    assert raw_public(alice_sign) == hex_field(keys, alice, "sign_key")

    token = hex_field(keys, "token")
    assert hkdf32(token, b"", INFO_TOKEN + lp("alice")) == hex_field(keys, "token_key alice")
    shared = x25519(shop_agree, hex_field(keys, broker, "agree_key"))
    pair = hkdf32(shared, b"", INFO_PAIR + lp("broker") + lp("shop"))
    assert pair == hex_field(keys, "pair_key shop-broker")

    commitment_bytes = hex_field(commitment, "commitment_bytes")
    cid = hashlib.sha256(TAG_COMMITMENT_ID + commitment_bytes).digest()
    assert cid == hex_field(commitment, "commitment_id")
    shared = x25519(alice_agree, hex_field(keys, shop, "agree_key"))
    chain_key = hkdf32(shared, cid, INFO_CHAIN + lp("alice") + lp("shop"))
    assert chain_key == hex_field(keys, "chain_key alice-shop")

    length = chain["length"]
    assert isinstance(length, int)
    words = build_chain(hex_field(chain, "seed"), length)
    assert [w.hex() for w in words] == chain["words"]
    assert as_list(unpack(commitment_bytes), 8)[2] == words[0]

    for vector, key in ((payment, chain_key), (redemption, pair)):
        envelope, topic = hex_field(vector, "envelope"), vector["topic"]
        assert isinstance(topic, str)
        auth, header, _, _ = split(envelope)
        assert header.body == hex_field(vector, "body_bytes")
        assert seal_mac(topic, auth, header, key) == envelope


def test_the_spec_buyer_uses_nothing_from_protocol() -> None:
    buyer_side = Path(__file__).read_text().split("\n# --- the reference side")[0]
    tree = ast.parse(buyer_side)
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("protocol")
        for alias in node.names
    }
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported
    assert not imported & used
    plain = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [name for name in plain if name.startswith("protocol")]
