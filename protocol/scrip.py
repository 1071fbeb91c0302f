"""Millicent scrip: value a buyer holds at one vendor, checked with one MAC and no signature.

The broker mints scrip under a key it shares with the vendor (derived from their pair key,
one per period); the vendor checks the tag, serves, and returns change under the same
key. Buyer and vendor authenticate their messages with a customer secret the vendor
derives from the buyer's id, so the vendor keeps no per-buyer keys. Pure: no I/O, and
times come in as arguments. docs/SCHEMES.md gives the layouts and the rules.

    scrip_key       = HKDF(pair_key(vendor, broker), "", INFO_SCRIP_KEY || lp(vendor) || u32be(period))
    customer_master = HKDF(pair_key(vendor, broker), "", INFO_CUSTOMER_MASTER || lp(vendor) || u32be(period))
    customer_secret = HKDF(customer_master, "", INFO_CUSTOMER_SECRET || lp(buyer))
    tag             = HMAC-SHA256(scrip_key, TAG_SCRIP || scrip_bytes)
"""  # noqa: E501 - the derivations read best one to a line

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from protocol.codec import decode_scrip, decode_tagged_scrip, encode
from protocol.crypto import KEY_SIZE, MacKey, hkdf, length_prefixed
from protocol.errors import AuthenticationError, LocalProtocolError, ScripError
from protocol.messages import Scrip, TaggedScrip

TAG_SCRIP: Final = b"micropay/v1/scrip\x00"
INFO_SCRIP_KEY: Final = b"micropay/v1/scrip-key\x00"
INFO_CUSTOMER_MASTER: Final = b"micropay/v1/customer-master\x00"
INFO_CUSTOMER_SECRET: Final = b"micropay/v1/customer-secret\x00"
INFO_SECRET_WRAP: Final = b"micropay/v1/customer-secret-wrap\x00"
TAG_ALLOWANCE: Final = b"micropay/v1/allowance\x00"
"""Prefix of a daily allowance grant's signature input (docs/SCHEMES.md §4)."""

PERIOD_MS: Final = 86_400_000
"""A key period is one UTC day: scrip minted in period ``p`` expires by ``(p + 2) * PERIOD_MS``."""
MAX_GENERATION: Final = 2**32 - 1
KEY_REF_SIZE: Final = 12
"""``u64be(vendor_serial) || u32be(period)``: the ``ref`` of a ``SCRIP`` envelope."""

ScripKeys = Callable[[int, int], bytes | None]
"""The scrip key a verifier holds for ``(vendor_serial, period)``, or ``None``."""


def period_of(ms: int) -> int:
    """The key period a time (ms since the epoch) falls in."""
    return ms // PERIOD_MS


def key_ref(vendor_serial: int, period: int) -> bytes:
    """``u64be(vendor_serial) || u32be(period)``: names the keys of a scrip stream (its ``ref``)."""
    return vendor_serial.to_bytes(8, "big") + period.to_bytes(4, "big")


def split_key_ref(ref: bytes) -> tuple[int, int]:
    """``(vendor_serial, period)`` of a ``SCRIP`` envelope's ``ref``, for picking its key.

    Any other length names no key, so it fails as authentication does (``AuthenticationError``),
    not as a malformed message: the sender is not yet authenticated.
    """
    if len(ref) != KEY_REF_SIZE:
        raise AuthenticationError
    return int.from_bytes(ref[:8], "big"), int.from_bytes(ref[8:], "big")


def _vendor_period(info: bytes, vendor: str, period: int) -> bytes:
    return info + length_prefixed(vendor) + period.to_bytes(4, "big")


def scrip_key(pair_key: bytes, vendor: str, period: int) -> bytes:
    """The key scrip for ``vendor`` is tagged with in ``period``, from the vendor-broker pair key.

    Both ends derive it when they need it, so rotating it per period costs nothing and no
    key is ever stored or sent.
    """
    return hkdf(pair_key, b"", _vendor_period(INFO_SCRIP_KEY, vendor, period))


def customer_master(pair_key: bytes, vendor: str, period: int) -> bytes:
    """The vendor's master customer secret of ``period``: the broker derives it too."""
    return hkdf(pair_key, b"", _vendor_period(INFO_CUSTOMER_MASTER, vendor, period))


def customer_secret(master: bytes, buyer: str) -> bytes:
    """The buyer-vendor secret: the vendor recomputes it from the buyer's id, storing nothing."""
    return hkdf(master, b"", INFO_CUSTOMER_SECRET + length_prefixed(buyer))


def wrap_customer_secret(
    buyer_pair_key: bytes, vendor: str, vendor_serial: int, period: int, secret: bytes
) -> bytes:
    """XOR with a pad only the buyer and the broker can derive; the same call unwraps.

    One (buyer, vendor key, period) has one customer secret, so each pad only ever covers
    that one value: a one-time pad, with the envelope's MAC for integrity.
    """
    if len(secret) != KEY_SIZE:
        raise LocalProtocolError("customer secrets are 32 bytes")
    info = INFO_SECRET_WRAP + length_prefixed(vendor) + key_ref(vendor_serial, period)
    pad = hkdf(buyer_pair_key, b"", info)
    return bytes(a ^ b for a, b in zip(secret, pad, strict=True))


def tag_scrip(scrip: Scrip, key: bytes | MacKey) -> bytes:
    """The ``TaggedScrip`` bytes: the scrip's exact bytes and their MAC under ``key``."""
    body = encode(scrip)
    mac = key if isinstance(key, MacKey) else MacKey(key)
    return encode(TaggedScrip(body, mac.tag(TAG_SCRIP, body)))


def verify_scrip(data: bytes, keys: ScripKeys, *, vendor: str, buyer: str, now_ms: int) -> Scrip:
    """The scrip in ``data``, once its tag verifies and it may be spent by ``buyer`` now.

    The tag is checked first (in constant time), so nothing unauthenticated is reported
    back. Raises ``MalformedMessageError`` for bytes that do not decode, ``ScripError``
    for everything else.
    """
    tagged = decode_tagged_scrip(data)
    scrip = decode_scrip(tagged.body)
    key = keys(scrip.vendor_serial, scrip.period)
    if key is None:
        raise ScripError(
            f"no scrip key for period {scrip.period} of certificate {scrip.vendor_serial}"
        )
    check_scrip(tagged, scrip, MacKey(key), vendor=vendor, buyer=buyer, now_ms=now_ms)
    return scrip


def check_scrip(  # noqa: PLR0913 - the scrip, its key, and who may spend it when
    tagged: TaggedScrip, scrip: Scrip, key: MacKey, *, vendor: str, buyer: str, now_ms: int
) -> None:
    """``verify_scrip`` for scrip already decoded (``scrip`` is ``tagged.body`` decoded).

    A vendor decodes a payment's scrip once and checks it under the scrip key it keeps
    per period, so the hot path neither decodes twice nor rebuilds the key's HMAC state.
    """
    try:
        key.verify(tagged.tag, TAG_SCRIP, tagged.body)
    except AuthenticationError as exc:
        raise ScripError("scrip tag does not verify") from exc
    if scrip.vendor != vendor:
        raise ScripError(f"scrip is for vendor {scrip.vendor!r}")
    if scrip.buyer != buyer:
        raise ScripError(f"scrip belongs to {scrip.buyer!r}")
    if now_ms > scrip.expires:
        raise ScripError("scrip expired")


def make_change(spent: Scrip, price: int, key: bytes | MacKey) -> tuple[Scrip, bytes] | None:
    """The change for paying ``price`` with ``spent``: the next generation, worth the rest.

    Everything but ``generation`` and ``value`` is the spent scrip's, so change can be worth
    no more, last no longer, nor move to another buyer. ``None`` when ``price`` takes the
    whole value. Deterministic: a repeated payment gets byte-identical change.
    """
    if type(price) is not int:
        raise LocalProtocolError("prices are integers")
    if price < 1:
        raise ScripError(f"price {price} is not positive")
    if price > spent.value:
        raise ScripError(f"scrip worth {spent.value} cannot pay {price}")
    if price == spent.value:
        return None
    if spent.generation >= MAX_GENERATION:
        raise ScripError("no generations left on this serial")
    change = msgspec.structs.replace(
        spent, generation=spent.generation + 1, value=spent.value - price
    )
    return change, tag_scrip(change, key)
