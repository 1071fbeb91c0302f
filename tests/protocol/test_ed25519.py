"""The one Ed25519 check (``crypto.verify_signature``): libsodium first, OpenSSL's verdict.

It must accept exactly the signatures OpenSSL accepts, as it did before libsodium answered
first: the golden vectors, their tampered copies, random corruptions, and the few
signatures libsodium alone refuses (``R`` or the key of small order).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.crypto import (
    TAG_CERTIFICATE,
    TAG_COMMITMENT,
    Identity,
    libsodium_verifies,
    openssl_verifies,
    verify_signature,
)
from protocol.errors import AuthenticationError
from tests.support.world import seeded_identity

VECTORS = Path(__file__).parent.parent / "vectors"
ORDER = 2**252 + 27742317777372353535851937790883648493  # L, the order of the base point
IDENTITY_POINT = (1).to_bytes(32, "little")  # (0, 1), of order 1


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return data


def signed_vector(name: str, signer: str, tag: bytes) -> tuple[bytes, bytes, bytes]:
    """(public key, ``tag || body``, signature) of a golden certificate or commitment."""
    body, signature = msgspec.msgpack.decode(bytes.fromhex(load(name)["signed_bytes"]))
    key = bytes.fromhex(load("keys")[signer]["sign_key"])
    return key, tag + body, signature


VECTORS_SIGNED = [
    signed_vector("certificate", "broker", TAG_CERTIFICATE),
    signed_vector("commitment", "alice (buyer)", TAG_COMMITMENT),
]


def verdict(key: bytes, message: bytes, signature: bytes) -> bool:
    """What ``verify_signature`` says, as a boolean."""
    try:
        verify_signature(key, b"", message, signature)
    except AuthenticationError:
        return False
    return True


def secret_scalar(identity: Identity) -> int:
    """The clamped scalar ``a`` of an Ed25519 key (RFC 8032, 5.1.5)."""
    seed = identity.signing.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] = (digest[31] & 127) | 64
    return int.from_bytes(digest, "little")


def identity_r_signature(identity: Identity, message: bytes) -> bytes:
    """A signature with ``R`` the identity point: ``S = H(R || A || M) a``, which passes
    the equation ``[S]B = R + [H]A``. Only the key's holder can make one."""
    digest = hashlib.sha512(IDENTITY_POINT + identity.sign_key + message).digest()
    s = int.from_bytes(digest, "little") % ORDER * secret_scalar(identity) % ORDER
    return IDENTITY_POINT + s.to_bytes(32, "little")


@pytest.mark.parametrize("vector", VECTORS_SIGNED, ids=["certificate", "commitment"])
def test_the_golden_vectors_verify_with_both_libraries(vector: tuple[bytes, bytes, bytes]) -> None:
    key, message, signature = vector
    assert libsodium_verifies(key, message, signature)
    assert openssl_verifies(key, message, signature)
    verify_signature(key, message[:5], message[5:], signature)  # tag and data split anywhere


@pytest.mark.parametrize("vector", VECTORS_SIGNED, ids=["certificate", "commitment"])
def test_every_bit_flipped_in_a_golden_signature_is_refused(
    vector: tuple[bytes, bytes, bytes],
) -> None:
    key, message, signature = vector
    for bit in range(len(signature) * 8):
        flipped = bytearray(signature)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not verdict(key, message, bytes(flipped)), bit
        assert not openssl_verifies(key, message, bytes(flipped)), bit


@pytest.mark.parametrize("vector", VECTORS_SIGNED, ids=["certificate", "commitment"])
def test_a_golden_signature_under_another_key_or_over_other_bytes_is_refused(
    vector: tuple[bytes, bytes, bytes],
) -> None:
    key, message, signature = vector
    assert not verdict(seeded_identity("someone").sign_key, message, signature)
    assert not verdict(key, message + b"\x00", signature)
    assert not verdict(key, message[1:], signature)
    with pytest.raises(AuthenticationError):
        verify_signature(key, b"another tag\x00", message, signature)


@settings(max_examples=300, deadline=None)
@given(
    vector=st.sampled_from(VECTORS_SIGNED),
    part=st.sampled_from(["key", "message", "signature"]),
    position=st.integers(min_value=0),
    xor=st.integers(min_value=1, max_value=255),
)
def test_corrupted_signatures_get_openssls_verdict(
    vector: tuple[bytes, bytes, bytes], part: str, position: int, xor: int
) -> None:
    fields = dict(zip(("key", "message", "signature"), vector, strict=True))
    corrupted = bytearray(fields[part])
    corrupted[position % len(corrupted)] ^= xor
    fields[part] = bytes(corrupted)
    key, message, signature = fields["key"], fields["message"], fields["signature"]
    reference = openssl_verifies(key, message, signature)
    assert verdict(key, message, signature) == reference
    assert not libsodium_verifies(key, message, signature) or reference


def test_a_signature_only_libsodium_refuses_is_judged_as_openssl_judges_it() -> None:
    # A buyer can sign its commitment with R the identity point. OpenSSL (and RFC 8032)
    # accept it, libsodium does not: were libsodium alone the judge, a vendor of an
    # earlier version (or of another implementation) would accept a commitment the
    # broker then refuses to redeem. The verdict stays OpenSSL's.
    buyer = seeded_identity("buyer1")
    message = TAG_COMMITMENT + b"a commitment"
    signature = identity_r_signature(buyer, message)
    assert openssl_verifies(buyer.sign_key, message, signature)
    assert not libsodium_verifies(buyer.sign_key, message, signature)
    verify_signature(buyer.sign_key, TAG_COMMITMENT, b"a commitment", signature)
    # Under a small-order key (the identity point) S = 0 "signs" anything for OpenSSL.
    anything = IDENTITY_POINT + bytes(32)
    assert openssl_verifies(IDENTITY_POINT, message, anything)
    assert not libsodium_verifies(IDENTITY_POINT, message, anything)
    assert verdict(IDENTITY_POINT, message, anything)


def test_a_non_canonical_s_is_refused_by_both() -> None:
    buyer = seeded_identity("buyer1")
    message = TAG_COMMITMENT + b"a commitment"
    signature = buyer.sign(TAG_COMMITMENT, b"a commitment")
    s = int.from_bytes(signature[32:], "little") + ORDER  # the same S mod L
    malleated = signature[:32] + s.to_bytes(32, "little")
    assert not openssl_verifies(buyer.sign_key, message, malleated)
    assert not libsodium_verifies(buyer.sign_key, message, malleated)
    assert not verdict(buyer.sign_key, message, malleated)


@pytest.mark.parametrize(
    ("key_size", "signature_size"), [(31, 64), (33, 64), (0, 64), (32, 63), (32, 65), (32, 0)]
)
def test_wrong_sizes_are_refused_without_reading_past_them(
    key_size: int, signature_size: int
) -> None:
    key, message, signature = VECTORS_SIGNED[1]
    key = (key * 2)[:key_size]
    signature = (signature + message)[:signature_size]  # a 63-byte one would shift the message
    assert not libsodium_verifies(key, message, signature)
    assert not verdict(key, message, signature)
