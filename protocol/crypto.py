"""Keys, signatures, MACs and key derivation, each with its own domain tag.

Every signed or derived value starts from a distinct ASCII tag followed by a NUL byte,
so bytes signed for one purpose can never be presented as another. ``docs/PROTOCOL.md``
lists the tags and the exact layouts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_is_valid_point,
    crypto_sign_open,
)
from nacl.exceptions import CryptoError

from protocol.errors import AuthenticationError, LocalProtocolError

KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAC_SIZE = 32

TAG_CERTIFICATE = b"micropay/v1/certificate\x00"
TAG_COMMITMENT = b"micropay/v1/commitment\x00"
TAG_COMMITMENT_ID = b"micropay/v1/commitment-id\x00"
TAG_ENROLL_PROOF = b"micropay/v1/enroll-proof\x00"
TAG_ENVELOPE = b"micropay/v1/envelope\x00"
TAG_PAYWORD = b"micropay/v1/payword\x00"
INFO_PAIR = b"micropay/v1/pair-key\x00"
INFO_CHAIN = b"micropay/v1/chain-key\x00"
INFO_TOKEN = b"micropay/v1/token-key\x00"


def length_prefixed(value: str | bytes) -> bytes:
    """One byte of length, then the bytes: how identifiers enter derivations."""
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 255:
        raise LocalProtocolError("identifier longer than 255 bytes")
    return bytes([len(raw)]) + raw


def sha256(data: bytes) -> bytes:
    """SHA-256 digest."""
    return hashlib.sha256(data).digest()


class AgentKeys(Protocol):
    """What a party does with its private keys; where they live is the key store's business.

    Every protocol operation needing a private key goes through these four members, so
    the keys can sit in a file (``Identity``) or in a PKCS#11 token (a smart card, an HSM)
    that signs and agrees without ever handing them out.
    """

    @property
    def sign_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    @property
    def agree_key(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        ...

    def sign(self, tag: bytes, data: bytes) -> bytes:
        """Ed25519 signature over ``tag || data``."""
        ...

    def shared_secret(self, peer_agree_key: bytes) -> bytes:
        """X25519 with a peer's public key; a low-order peer key is an authentication failure."""
        ...

    def derive_secret(self, info: bytes) -> bytes:
        """A 32-byte secret bound to ``info`` that only the holder of these keys can compute.

        Deterministic, and unchanged when the signing and agreement keys are rotated: the
        broker's enrollment-token secret and the key that seals seeds at rest come from it.
        """
        ...


@dataclass(frozen=True, slots=True)
class Identity:
    """Keys held in this process: Ed25519 to sign, X25519 to agree, a seed for secrets.

    ``secret_seed`` is what ``derive_secret`` starts from; key files written before it
    existed have none, and then the signing seed serves (what those versions derived
    their secrets from), so nothing derived before changes.
    """

    signing: Ed25519PrivateKey
    agreement: X25519PrivateKey
    secret_seed: bytes | None = None

    @classmethod
    def from_seeds(
        cls, sign_seed: bytes, agree_seed: bytes, secret_seed: bytes | None = None
    ) -> Identity:
        """Rebuild an identity from its 32-byte private seeds."""
        if secret_seed is not None and len(secret_seed) != KEY_SIZE:
            raise ValueError("the secret seed is 32 bytes")
        return cls(
            Ed25519PrivateKey.from_private_bytes(sign_seed),
            X25519PrivateKey.from_private_bytes(agree_seed),
            secret_seed,
        )

    @classmethod
    def generate(cls) -> Identity:
        """A fresh identity from the operating system's random source."""
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate(), os.urandom(KEY_SIZE))

    @property
    def sign_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self.signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def agree_key(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        return self.agreement.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def sign_seed(self) -> bytes:
        """The private Ed25519 seed (only the file key store writes it)."""
        return self.signing.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def agree_seed(self) -> bytes:
        """The private X25519 scalar (only the file key store writes it)."""
        return self.agreement.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def sign(self, tag: bytes, data: bytes) -> bytes:
        """Ed25519 signature over ``tag || data``."""
        return self.signing.sign(tag + data)

    def shared_secret(self, peer_agree_key: bytes) -> bytes:
        """X25519 with a peer's public key; a low-order peer key is an authentication failure."""
        try:
            return self.agreement.exchange(X25519PublicKey.from_public_bytes(peer_agree_key))
        except ValueError as exc:
            raise AuthenticationError from exc

    def derive_secret(self, info: bytes) -> bytes:
        """HKDF-SHA256 of the secret seed (or, for an older key file, the signing seed)."""
        seed = self.secret_seed if self.secret_seed is not None else self.sign_seed
        return hkdf(seed, b"", info)


@lru_cache(maxsize=4096)
def _ed25519_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def openssl_verifies(sign_key: bytes, message: bytes, signature: bytes) -> bool:
    """OpenSSL's verdict on an Ed25519 signature (through ``cryptography``): the reference."""
    try:
        _ed25519_key(sign_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def libsodium_verifies(sign_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether libsodium (PyNaCl) accepts it: twice as fast as OpenSSL, and a little stricter.

    It also refuses what RFC 8032 and OpenSSL accept: keys and ``R`` of small order, keys
    not canonically encoded. Honest signers never produce those, so ``True`` here means
    OpenSSL says ``True`` too; ``False`` alone settles nothing.
    """
    if len(sign_key) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False  # libsodium would read past a short key, or shift the message
    try:
        crypto_sign_open(signature + message, sign_key)
    except CryptoError:
        return False
    return True


def verify_signature(sign_key: bytes, tag: bytes, data: bytes, signature: bytes) -> None:
    """Check an Ed25519 signature over ``tag || data``; raise the opaque error if it fails.

    The one Ed25519 check of the protocol. The verdict is OpenSSL's, as it always was:
    libsodium answers first (~55 µs instead of ~105 µs) and OpenSSL is asked only about
    what libsodium refused, so a signature it alone is stricter about (a buyer can make
    one with ``R`` the identity point) is judged as before, by every party alike. A
    forged signature costs both checks.
    """
    message = tag + data
    if libsodium_verifies(sign_key, message, signature):
        return
    if not openssl_verifies(sign_key, message, signature):
        raise AuthenticationError


ED25519_IDENTITY = (1).to_bytes(KEY_SIZE, "little")
"""The neutral point ``(0, 1)``, encoded: of order 1, the smallest of the small."""

_X25519_PROBE = X25519PrivateKey.from_private_bytes(sha256(b"micropay/v1/weak-key-probe\x00"))


def _ed25519_weakness(sign_key: bytes) -> str | None:
    """What is wrong with an Ed25519 public key, if anything.

    libsodium's ``crypto_core_ed25519_is_valid_point`` accepts exactly the canonical
    encodings of points of the prime-order subgroup other than the identity. Only for a
    refused key does the sum with the identity (which re-encodes the point canonically,
    or fails off the curve) and ``[8]`` of it (the identity exactly for small order) say
    which rule it broke.
    """
    if len(sign_key) != KEY_SIZE:
        return "not 32 bytes"
    if crypto_core_ed25519_is_valid_point(sign_key):
        return None
    try:
        canonical = crypto_core_ed25519_add(sign_key, ED25519_IDENTITY)
    except CryptoError:
        return "not a point on the curve"
    eightfold = canonical
    for _ in range(3):
        eightfold = crypto_core_ed25519_add(eightfold, eightfold)
    if eightfold == ED25519_IDENTITY:
        return "of small order"
    if canonical != sign_key:
        return "not canonically encoded"
    return "outside the prime-order subgroup"


def _x25519_weakness(agree_key: bytes) -> str | None:
    """Whether an X25519 public key is of small order: X25519 with it is all zero.

    OpenSSL (through ``cryptography``) refuses to return an all-zero shared secret and
    raises ``ValueError``. A fixed private key is as good a probe as any: its scalar is a
    multiple of 8 below 8 times either prime order (the curve's and the twist's), so the
    product vanishes exactly for the points of order dividing 8, on the curve or its twist,
    whatever their encoding (``u + p``, the top bit set).
    """
    if len(agree_key) != KEY_SIZE:
        return "not 32 bytes"
    try:
        _X25519_PROBE.exchange(X25519PublicKey.from_public_bytes(agree_key))
    except ValueError:
        return "of small order (X25519 with it is all zero)"
    return None


@lru_cache(maxsize=4096)
def weak_key_reason(sign_key: bytes, agree_key: bytes) -> str | None:
    """Why a pair of public keys must not be certified, or ``None`` if they may be.

    The one check of key strength (docs/PROTOCOL.md 11.1): the broker refuses to enroll
    such keys, and a vendor refuses a buyer certificate that carries them. Anyone can
    sign under a small-order Ed25519 key for OpenSSL, so its holder could disown its own
    signatures; a small-order X25519 key leaves no shared secret to derive keys from.
    About 80 µs, so cached for the vendor, which asks once per buyer.
    """
    if (reason := _ed25519_weakness(sign_key)) is not None:
        return f"signing key is {reason}"
    if (reason := _x25519_weakness(agree_key)) is not None:
        return f"agreement key is {reason}"
    return None


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 with a 32-byte output."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(ikm)


def pair_key(me: AgentKeys, my_id: str, peer_agree_key: bytes, peer_id: str) -> bytes:
    """The static MAC key between an agent and the broker (the same from either side)."""
    first, second = sorted((my_id.encode(), peer_id.encode()))
    info = INFO_PAIR + length_prefixed(first) + length_prefixed(second)
    return hkdf(me.shared_secret(peer_agree_key), b"", info)


def chain_key(
    me: AgentKeys, peer_agree_key: bytes, buyer: str, vendor: str, commitment_id: bytes
) -> bytes:
    """The MAC key between a buyer and a vendor for one commitment."""
    info = INFO_CHAIN + length_prefixed(buyer) + length_prefixed(vendor)
    return hkdf(me.shared_secret(peer_agree_key), commitment_id, info)


def token_key(token: bytes, account: str) -> bytes:
    """The MAC key of an enrollment exchange, from the operator's one-time token."""
    return hkdf(token, b"", INFO_TOKEN + length_prefixed(account))


class MacKey:
    """HMAC-SHA256 with the key schedule computed once (saves ~0.5 µs a message)."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise LocalProtocolError("MAC keys are 32 bytes")
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def tag(self, *parts: bytes) -> bytes:
        """The MAC of the concatenated parts."""
        mac = self._base.copy()
        for part in parts:
            mac.update(part)
        return mac.digest()

    def verify(self, tag: bytes, *parts: bytes) -> None:
        """Constant-time check; raise the opaque error if the tag is wrong."""
        if not hmac.compare_digest(self.tag(*parts), tag):
            raise AuthenticationError


INFO_TOKEN_SECRET = b"micropay/v1/token-secret\x00"
INFO_TOKEN_VALUE = b"micropay/v1/token\x00"


def broker_token_secret(broker: AgentKeys) -> bytes:
    """The broker's secret for enrollment tokens, derived inside its key store.

    Tokens are re-derived from (secret, account, nonce), so the ledger stores only the
    nonce and never a usable token.
    """
    return broker.derive_secret(INFO_TOKEN_SECRET)


def enrollment_token(secret: bytes, account: str, nonce: bytes) -> bytes:
    """The one-time token the operator hands to the owner of ``account``."""
    return hkdf(secret, nonce, INFO_TOKEN_VALUE + length_prefixed(account))
