"""X25519 for token keys, in one of two modes the key descriptor records.

``token``: the key pair is generated in the token and ``CKM_ECDH1_DERIVE`` computes the
shared secret there, into a session object that is readable (not sensitive) so the
protocol can run HKDF on it, then destroyed. A token that will not make such an object
cannot use this mode.

``sealed``: for tokens without X25519, the scalar is generated in this process and kept in
the descriptor under AES-256-GCM with a key only the token derives, so a copied
descriptor is useless without the token (and its PIN). Once opened, the scalar is in
memory, as a file key's is.
"""

from __future__ import annotations

import os
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pkcs11 import KDF, Attribute, KeyType, Mechanism
from pkcs11.types import DeriveMixin

from agents.runtime.key_errors import TokenError
from agents.runtime.pkcs11_session import TokenSession
from protocol.crypto import KEY_SIZE
from protocol.errors import AuthenticationError

SEAL_INFO: Final = b"micropay/v1/agreement-seal\x00"
"""What ``derive_secret`` is asked for to get the key sealing an in-process scalar."""
NONCE_SIZE: Final = 12

_PROBE = X25519PrivateKey.generate()


class Agreement(Protocol):
    """Either mode: a public key, and X25519 with a peer's."""

    @property
    def agree_key(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        ...

    def exchange(self, peer_agree_key: bytes) -> bytes:
        """The shared secret; a low-order peer key raises ``AuthenticationError``."""
        ...


def refuse_low_order(peer_agree_key: bytes) -> None:
    """Reject what ``Identity`` rejects, before asking the token (which says only "failed").

    A clamped scalar is a multiple of 8, so X25519 with a point of order dividing 8 is all
    zero, which OpenSSL refuses with ``ValueError``: any private key is a probe.
    """
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(peer_agree_key))
    except ValueError as exc:
        raise AuthenticationError from exc


class TokenAgreement:
    """X25519 inside the token (``CKM_ECDH1_DERIVE``)."""

    def __init__(self, session: TokenSession, private: DeriveMixin, agree_key: bytes) -> None:
        self._session = session
        self._private = private
        self._agree_key = agree_key

    @property
    def agree_key(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        return self._agree_key

    def exchange(self, peer_agree_key: bytes) -> bytes:
        """ECDH in the token into a short-lived session object, read once, then destroyed."""
        refuse_low_order(peer_agree_key)
        with self._session.use("deriving an X25519 shared secret"):
            derived = self._private.derive_key(
                KeyType.GENERIC_SECRET,
                KEY_SIZE * 8,
                mechanism=Mechanism.ECDH1_DERIVE,
                mechanism_param=(KDF.NULL, None, peer_agree_key),
                template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
            )
            try:
                secret = bytes(derived[Attribute.VALUE])
            finally:
                derived.destroy()
        if len(secret) != KEY_SIZE or not any(secret):
            raise AuthenticationError
        return secret


class SealedAgreement:
    """X25519 in this process, with the scalar kept sealed under a token-derived key."""

    def __init__(self, private: X25519PrivateKey) -> None:
        self._private = private
        self._agree_key = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> SealedAgreement:
        """A fresh scalar from the operating system's random source."""
        return cls(X25519PrivateKey.generate())

    @classmethod
    def unseal(cls, seal_key: bytes, sealed: bytes, agree_key: bytes) -> SealedAgreement:
        """Open the descriptor's sealed scalar; it must give the recorded public key."""
        try:
            scalar = AESGCM(seal_key).decrypt(
                sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], SEAL_INFO + agree_key
            )
        except InvalidTag as exc:
            raise TokenError(
                "the sealed agreement key does not open with this token's secret "
                "(another token, or an edited descriptor)"
            ) from exc
        opened = cls(X25519PrivateKey.from_private_bytes(scalar))
        if opened.agree_key != agree_key:
            raise TokenError("the sealed agreement key does not match the descriptor's agree_key")
        return opened

    @property
    def agree_key(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        return self._agree_key

    def seal(self, seal_key: bytes) -> bytes:
        """The scalar under AES-256-GCM, bound to the public key: nonce then ciphertext."""
        scalar = self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        nonce = os.urandom(NONCE_SIZE)
        return nonce + AESGCM(seal_key).encrypt(nonce, scalar, SEAL_INFO + self._agree_key)

    def exchange(self, peer_agree_key: bytes) -> bytes:
        """X25519 as ``Identity`` does it."""
        try:
            return self._private.exchange(X25519PublicKey.from_public_bytes(peer_agree_key))
        except ValueError as exc:
            raise AuthenticationError from exc
