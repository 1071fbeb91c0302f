"""PayWord hash chains with position-bound, domain-separated hashing.

``w_{i-1} = SHA-256(TAG_PAYWORD || u32be(i) || w_i)``. Binding the index into every link
means a preimage found for one position (or one chain) is useless at any other, which
keeps long chains at full 256-bit strength against multi-target search.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol

from protocol.crypto import KEY_SIZE, TAG_PAYWORD
from protocol.errors import LocalProtocolError

MAX_CHAIN_LENGTH = 2**32 - 1


def step(word: bytes, index: int) -> bytes:
    """From ``w_index`` to ``w_{index-1}``: one hash, the vendor's whole per-unit cost."""
    return hashlib.sha256(TAG_PAYWORD + index.to_bytes(4, "big") + word).digest()


def walk(word: bytes, index: int, steps: int) -> bytes:
    """Hash ``w_index`` down ``steps`` times, giving ``w_{index-steps}``."""
    digest = hashlib.sha256
    for position in range(index, index - steps, -1):
        word = digest(TAG_PAYWORD + position.to_bytes(4, "big") + word).digest()
    return word


def extends(word: bytes, index: int, known_word: bytes, known_index: int) -> bool:
    """Whether ``w_index`` hashes down to ``w_known_index`` (constant-time comparison)."""
    if index <= known_index or len(word) != KEY_SIZE:
        return False
    return hmac.compare_digest(walk(word, index, index - known_index), known_word)


class PaywordChain(Protocol):
    """What a buyer needs of a chain: its root, its length and any word of it."""

    @property
    def root(self) -> bytes:
        """``w_0``, the value the buyer commits to."""
        ...

    @property
    def length(self) -> int:
        """``n``: the chain pays at most ``n`` units."""
        ...

    def word(self, index: int) -> bytes:
        """``w_index``; revealing it pays ``index`` units in total."""
        ...


def check_chain(seed: bytes, length: int) -> None:
    """Refuse a seed or a length no chain can have."""
    if len(seed) != KEY_SIZE:
        raise LocalProtocolError("a chain seed is 32 bytes")
    if not 1 <= length <= MAX_CHAIN_LENGTH:
        raise LocalProtocolError(f"chain length must be 1..{MAX_CHAIN_LENGTH}")


class HashChain:
    """A buyer's chain ``w_0 .. w_n``, built once from its secret seed ``w_n``.

    Stored as one contiguous ``bytes`` (32 bytes per link) so a 1 M-link chain costs 32 MB,
    not the ~65 MB that a list of ``bytes`` objects would.
    """

    __slots__ = ("_links", "length")

    def __init__(self, seed: bytes, length: int) -> None:
        check_chain(seed, length)
        self.length = length
        links = [b""] * (length + 1)
        word = seed
        links[length] = word
        digest = hashlib.sha256
        for index in range(length, 0, -1):
            word = digest(TAG_PAYWORD + index.to_bytes(4, "big") + word).digest()
            links[index - 1] = word
        self._links = b"".join(links)

    @property
    def root(self) -> bytes:
        """``w_0``, the value the buyer commits to."""
        return self._links[:KEY_SIZE]

    def word(self, index: int) -> bytes:
        """``w_index``; revealing it pays ``index`` units in total."""
        if not 0 <= index <= self.length:
            raise LocalProtocolError(f"index {index} outside 0..{self.length}")
        start = index * KEY_SIZE
        return self._links[start : start + KEY_SIZE]
