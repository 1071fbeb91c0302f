"""Scrip primitives: the tag, the key schedule, change, and the vector rebuilt from hashlib."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.codec import decode_scrip, decode_tagged_scrip, encode
from protocol.crypto import MacKey
from protocol.errors import (
    AuthenticationError,
    LocalProtocolError,
    MalformedMessageError,
    ScripError,
)
from protocol.messages import Scrip, TaggedScrip
from protocol.scrip import (
    PERIOD_MS,
    ScripKeys,
    customer_master,
    customer_secret,
    key_ref,
    make_change,
    period_of,
    scrip_key,
    tag_scrip,
    verify_scrip,
    wrap_customer_secret,
)

VECTORS = Path(__file__).parent.parent / "vectors"
NOW_MS = 1_767_225_600_000
PERIOD = period_of(NOW_MS)
PAIR = hashlib.sha256(b"test:shop-broker").digest()
OTHER_PAIR = hashlib.sha256(b"test:other-broker").digest()
KEY = scrip_key(PAIR, "shop", PERIOD)


def minted(**changes: Any) -> Scrip:
    fields: dict[str, Any] = {
        "vendor": "shop",
        "vendor_serial": 2,
        "period": PERIOD,
        "serial": 7,
        "generation": 0,
        "buyer": "alice",
        "buyer_serial": 1,
        "value": 100,
        "currency": "EUR",
        "expires": NOW_MS + PERIOD_MS,
        "properties": [],
        "nonce": bytes(range(16)),
    }
    return Scrip(**{**fields, **changes})


def shop_keys(pair: bytes = PAIR, vendor_serial: int = 2) -> ScripKeys:
    """What shop holds: the keys of its current certificate, for the periods still open."""

    def lookup(serial: int, period: int) -> bytes | None:
        if serial != vendor_serial or period not in {PERIOD - 1, PERIOD}:
            return None
        return scrip_key(pair, "shop", period)

    return lookup


def verify(data: bytes, keys: ScripKeys | None = None, **checks: Any) -> Scrip:
    expected: dict[str, Any] = {"vendor": "shop", "buyer": "alice", "now_ms": NOW_MS}
    return verify_scrip(data, keys or shop_keys(), **{**expected, **checks})


def retagged(data: bytes, **body_changes: Any) -> bytes:
    """The same tag over an altered body: what a buyer would try to raise its scrip's value."""
    tagged = decode_tagged_scrip(data)
    body = msgspec.structs.replace(decode_scrip(tagged.body), **body_changes)
    return encode(TaggedScrip(encode(body), tagged.tag))


# --- the tag ---------------------------------------------------------------------------------


def test_minted_scrip_verifies_and_reads_back() -> None:
    scrip = minted(properties=["country=DE"])
    assert verify(tag_scrip(scrip, KEY)) == scrip


@pytest.mark.parametrize("position", [0, 15, 31])
def test_a_forged_tag_is_refused(position: int) -> None:
    tagged = decode_tagged_scrip(tag_scrip(minted(), KEY))
    tag = bytearray(tagged.tag)
    tag[position] ^= 0x01
    with pytest.raises(ScripError, match="tag"):
        verify(encode(TaggedScrip(tagged.body, bytes(tag))))


def test_scrip_tagged_under_a_key_the_buyer_made_up_is_refused() -> None:
    with pytest.raises(ScripError, match="tag"):
        verify(tag_scrip(minted(value=10**6), hashlib.sha256(b"guess").digest()))


@pytest.mark.parametrize(
    "change",
    [{"value": 101}, {"generation": 1}, {"buyer": "mallory"}, {"expires": NOW_MS + 2 * PERIOD_MS}],
    ids=["value", "generation", "buyer", "expires"],
)
def test_any_altered_field_breaks_the_tag(change: dict[str, Any]) -> None:
    with pytest.raises(ScripError, match="tag"):
        verify(retagged(tag_scrip(minted(), KEY), **change), buyer=change.get("buyer", "alice"))


def test_scrip_of_another_vendor_is_refused() -> None:
    other_key = scrip_key(OTHER_PAIR, "other", PERIOD)
    with pytest.raises(ScripError, match="tag"):  # other's key is not shop's
        verify(tag_scrip(minted(vendor="other"), other_key))
    with pytest.raises(ScripError, match="for vendor 'other'"):  # right key, wrong name
        verify(tag_scrip(minted(vendor="other"), KEY))


def test_scrip_of_the_vendors_previous_certificate_finds_no_key() -> None:
    old_key = scrip_key(OTHER_PAIR, "shop", PERIOD)
    with pytest.raises(ScripError, match="no scrip key"):
        verify(tag_scrip(minted(vendor_serial=1), old_key))


def test_scrip_of_another_buyer_is_refused() -> None:
    with pytest.raises(ScripError, match="belongs to 'alice'"):
        verify(tag_scrip(minted(), KEY), buyer="mallory")


def test_a_key_of_the_wrong_period_fails() -> None:
    next_period = scrip_key(PAIR, "shop", PERIOD + 1)
    with pytest.raises(ScripError, match="tag"):
        verify(tag_scrip(minted(), next_period))
    with pytest.raises(ScripError, match="no scrip key"):  # a period the vendor holds no key for
        verify(tag_scrip(minted(period=PERIOD - 2), scrip_key(PAIR, "shop", PERIOD - 2)))


def test_expired_scrip_is_refused() -> None:
    data = tag_scrip(minted(), KEY)
    assert verify(data, now_ms=NOW_MS + PERIOD_MS).value == 100  # up to expires, inclusive
    with pytest.raises(ScripError, match="expired"):
        verify(data, now_ms=NOW_MS + PERIOD_MS + 1)


@pytest.mark.parametrize("data", [b"", b"\x92\xc4\x00", b"\x92\xc4\x01\x90" + bytes(34)])
def test_bytes_that_are_not_scrip_are_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        verify(data)


# --- change ----------------------------------------------------------------------------------


@given(value=st.integers(1, 2**63 - 1), data=st.data())
def test_change_conserves_value(value: int, data: st.DataObject) -> None:
    price = data.draw(st.integers(1, value))
    spent = minted(value=value, generation=data.draw(st.integers(0, 2**32 - 2)))
    made = make_change(spent, price, KEY)
    if price == value:
        assert made is None
        return
    assert made is not None
    change, tagged = made
    assert change.value + price == spent.value
    assert change.generation == spent.generation + 1
    same = ("vendor", "vendor_serial", "period", "serial", "buyer", "currency", "expires")
    assert all(getattr(change, f) == getattr(spent, f) for f in same)
    assert change.properties == spent.properties
    assert verify(tagged) == change


def test_change_is_deterministic() -> None:
    assert make_change(minted(), 30, KEY) == make_change(minted(), 30, KEY)


@pytest.mark.parametrize(("price", "error"), [(101, "cannot pay 101"), (0, "not positive")])
def test_change_refuses_a_price_the_scrip_cannot_pay(price: int, error: str) -> None:
    with pytest.raises(ScripError, match=error):
        make_change(minted(), price, KEY)


@pytest.mark.parametrize("price", [True, 30.0, "30"])
def test_change_takes_integers_only(price: object) -> None:
    with pytest.raises(LocalProtocolError):
        make_change(minted(), price, KEY)  # type: ignore[arg-type]


def test_the_last_generation_makes_no_change() -> None:
    with pytest.raises(ScripError, match="no generations"):
        make_change(minted(generation=2**32 - 1), 1, KEY)


# --- keys and the customer secret --------------------------------------------------------------


def test_scrip_keys_differ_per_vendor_period_and_pair_key() -> None:
    keys = {
        KEY,
        scrip_key(PAIR, "shop", PERIOD + 1),
        scrip_key(PAIR, "shop2", PERIOD),
        scrip_key(OTHER_PAIR, "shop", PERIOD),
        customer_master(PAIR, "shop", PERIOD),
    }
    assert len(keys) == 5


def test_a_payment_mac_under_a_wrong_customer_secret_fails() -> None:
    """The SCRIP envelope's MAC, over the topic and the payment carrying the scrip bytes."""
    master = customer_master(PAIR, "shop", PERIOD)
    topic = b"micropay/v1/in/shop/alice"
    payment = len(topic).to_bytes(2, "big") + topic + b"\x04" + tag_scrip(minted(), KEY)
    mac = MacKey(customer_secret(master, "alice")).tag(payment)
    MacKey(customer_secret(master, "alice")).verify(mac, payment)
    for wrong in (
        customer_secret(master, "mallory"),
        customer_secret(customer_master(PAIR, "shop", PERIOD + 1), "alice"),
        customer_secret(customer_master(PAIR, "shop2", PERIOD), "alice"),
        customer_secret(customer_master(OTHER_PAIR, "shop", PERIOD), "alice"),
        customer_secret(KEY, "alice"),
    ):
        with pytest.raises(AuthenticationError):
            MacKey(wrong).verify(mac, payment)


def test_the_wrapped_customer_secret_unwraps_with_the_same_call() -> None:
    buyer_pair = hashlib.sha256(b"test:alice-broker").digest()
    secret = customer_secret(customer_master(PAIR, "shop", PERIOD), "alice")
    wrapped = wrap_customer_secret(buyer_pair, "shop", 2, PERIOD, secret)
    assert wrapped != secret
    assert wrap_customer_secret(buyer_pair, "shop", 2, PERIOD, wrapped) == secret
    assert wrap_customer_secret(OTHER_PAIR, "shop", 2, PERIOD, wrapped) != secret
    with pytest.raises(LocalProtocolError):
        wrap_customer_secret(buyer_pair, "shop", 2, PERIOD, secret[:16])


def test_periods_are_utc_days_and_the_ref_names_certificate_and_period() -> None:
    assert period_of(NOW_MS) == 20_454  # 2026-01-01
    assert period_of(NOW_MS - 1) == 20_453
    assert key_ref(2, PERIOD) == bytes.fromhex("000000000000000200004fe6")


# --- the vector, rebuilt from hashlib, hmac and msgspec alone ----------------------------------

TAG_SCRIP = b"micropay/v1/scrip\x00"
INFO_SCRIP_KEY = b"micropay/v1/scrip-key\x00"
INFO_CUSTOMER_MASTER = b"micropay/v1/customer-master\x00"
INFO_CUSTOMER_SECRET = b"micropay/v1/customer-secret\x00"
INFO_SECRET_WRAP = b"micropay/v1/customer-secret-wrap\x00"
SCRIP_FIELDS = (
    "vendor",
    "vendor_serial",
    "period",
    "serial",
    "generation",
    "buyer",
    "buyer_serial",
    "value",
    "currency",
    "expires",
    "properties",
    "nonce",
)


def hkdf(ikm: bytes, info: bytes) -> bytes:
    """RFC 5869 with an empty salt and one block of output."""
    prk = hmac.digest(bytes(32), ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


def lp(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return data


def test_scrip_vector_from_hashlib_hmac_and_msgspec() -> None:
    vector = load("scrip")
    inputs = vector["inputs"]
    fields, price = dict(inputs["scrip"]), inputs["price"]
    fields["nonce"] = bytes.fromhex(fields["nonce"])  # the only bytes among the fields
    assert len(fields["nonce"]) == 16
    vendor_pair = bytes.fromhex(inputs["pair_keys"]["shop-broker"])
    buyer_pair = bytes.fromhex(inputs["pair_keys"]["alice-broker"])
    assert inputs["pair_keys"]["shop-broker"] == load("keys")["pair_key shop-broker"]
    vendor, period = fields["vendor"], fields["period"]
    assert period == fields["expires"] // 86_400_000 - 1 == vector["period"]
    ref = fields["vendor_serial"].to_bytes(8, "big") + period.to_bytes(4, "big")
    assert vector["ref"] == ref.hex()

    key = hkdf(vendor_pair, INFO_SCRIP_KEY + lp(vendor) + period.to_bytes(4, "big"))
    master = hkdf(vendor_pair, INFO_CUSTOMER_MASTER + lp(vendor) + period.to_bytes(4, "big"))
    secret = hkdf(master, INFO_CUSTOMER_SECRET + lp(fields["buyer"]))
    pad = hkdf(buyer_pair, INFO_SECRET_WRAP + lp(vendor) + ref)
    assert vector["scrip_key"] == key.hex()
    assert vector["customer_master"] == master.hex()
    assert vector["customer_secret"] == secret.hex()
    assert (
        vector["wrapped_customer_secret"]
        == bytes(a ^ b for a, b in zip(secret, pad, strict=True)).hex()
    )

    body = msgspec.msgpack.encode([fields[f] for f in SCRIP_FIELDS])
    assert vector["scrip_bytes"] == body.hex()
    assert vector["tag_input"] == (TAG_SCRIP + body).hex()
    tag = hmac.digest(key, TAG_SCRIP + body, "sha256")
    assert vector["tagged_bytes"] == msgspec.msgpack.encode([body, tag]).hex()

    change_fields = {**fields, "generation": 1, "value": fields["value"] - price}
    change = msgspec.msgpack.encode([change_fields[f] for f in SCRIP_FIELDS])
    change_tag = hmac.digest(key, TAG_SCRIP + change, "sha256")
    assert vector["change_bytes"] == change.hex()
    assert vector["change_tagged_bytes"] == msgspec.msgpack.encode([change, change_tag]).hex()
