"""Chain seeds sealed at rest: AES-256-GCM under a key only the agent's key store derives.

A seed is the buyer's money on its chain, and the vendor holds the chain's root: a copy
of the wallet file alone must not let anyone compute a payword. So the wallet keeps
each seed as ``0x01 || nonce (12) || ciphertext || tag (16)``, sealed under
``derive_secret(SEAL_KEY_INFO)`` with the account and the commitment id as associated
data: a blob opens only beside the keys that sealed it, in the same wallet account and
on the same chain.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agents.runtime.keystore import KeyFileError
from protocol.crypto import AgentKeys, length_prefixed

SEAL_KEY_INFO: Final = b"micropay/v1/seal-key\x00"
SEALED_SEED_TAG: Final = b"micropay/v1/sealed-seed\x00"
SEALED_SCRIP_TAG: Final = b"micropay/v1/sealed-scrip\x00"
"""Associated-data prefix of sealed scrip and customer secrets (docs/SCHEMES.md 3.8)."""
VERSION: Final = 0x01
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
SEED_SIZE: Final = 32
SEALED_SIZE: Final = 1 + NONCE_SIZE + SEED_SIZE + TAG_SIZE
OTHER_KEYS: Final = (
    "wallet.db was sealed by other keys:"
    " this wallet cannot be opened without the key store it was created with"
)


class SealError(KeyFileError):
    """A sealed seed does not open with these keys, or is not a sealed seed at all.

    A key-store error to the user: the wallet is fine, the keys beside it are not its own.
    """


class SeedSealer:
    """Seals and unseals one account's chain seeds and scrip under its key store's sealing key."""

    __slots__ = ("_aead", "_prefix", "_scrip_prefix")

    def __init__(self, keys: AgentKeys, account: str) -> None:
        self._aead = AESGCM(keys.derive_secret(SEAL_KEY_INFO))
        self._prefix = SEALED_SEED_TAG + length_prefixed(account)
        self._scrip_prefix = SEALED_SCRIP_TAG + length_prefixed(account)

    def seal(self, commitment_id: bytes, seed: bytes) -> bytes:
        """The blob the wallet stores for ``seed``, bound to this account and chain."""
        if len(seed) != SEED_SIZE:
            msg = f"a chain seed is {SEED_SIZE} bytes, not {len(seed)}"
            raise ValueError(msg)
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, seed, self._prefix + commitment_id)
        return bytes([VERSION]) + nonce + sealed

    def unseal(self, commitment_id: bytes, blob: bytes) -> bytes:
        """The seed inside ``blob``; ``SealError`` if these keys did not seal it for this chain."""
        if len(blob) != SEALED_SIZE or blob[0] != VERSION:
            msg = f"wallet.db holds a chain seed in no known format ({len(blob)} bytes)"
            raise SealError(msg)
        nonce, sealed = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
        try:
            return self._aead.decrypt(nonce, sealed, self._prefix + commitment_id)
        except InvalidTag:
            raise SealError(OTHER_KEYS) from None

    def seal_scrip(self, label: bytes, data: bytes) -> bytes:
        """Scrip bytes or a customer secret as the wallet stores them, bound to ``label``.

        They are money as a seed is (3.8): a copy of the wallet alone must not spend them.
        ``label`` names the row (a serial, a vendor and ``ref``), so a blob opens only there.
        """
        nonce = os.urandom(NONCE_SIZE)
        return (
            bytes([VERSION]) + nonce + self._aead.encrypt(nonce, data, self._scrip_prefix + label)
        )

    def unseal_scrip(self, label: bytes, blob: bytes) -> bytes:
        """What ``seal_scrip`` sealed under ``label``; ``SealError`` if these keys did not."""
        if len(blob) < 1 + NONCE_SIZE + TAG_SIZE or blob[0] != VERSION:
            msg = f"wallet.db holds scrip in no known format ({len(blob)} bytes)"
            raise SealError(msg)
        nonce, sealed = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
        try:
            return self._aead.decrypt(nonce, sealed, self._scrip_prefix + label)
        except InvalidTag:
            raise SealError(OTHER_KEYS) from None


def is_plain_seed(stored: bytes) -> bool:
    """Whether a stored seed is one an earlier version kept unsealed (32 bytes as is)."""
    return len(stored) == SEED_SIZE


def scrip_label(serial: int) -> bytes:
    """What a sealed scrip is bound to: its serial (the row holds its live generation)."""
    return b"scrip" + serial.to_bytes(8, "big")


def secret_label(vendor: str, ref: bytes) -> bytes:
    """What a sealed customer secret is bound to: the vendor and its ``ref``."""
    return b"secret" + length_prefixed(vendor) + ref
