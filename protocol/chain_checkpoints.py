"""A buyer's chain kept as every k-th word: memory of ~2√n words instead of n.

A device cannot hold 32 bytes per unit (32 MB for a million-unit chain). Keeping only
``w_0, w_k, w_2k, ...`` and the seed costs ``(n/k + 1) x 32`` bytes; any other word is
recomputed from the checkpoint above it in at most ``k - 1`` hashes. The words between two
checkpoints are kept once computed (``k - 1`` more words), so payments that go up the chain
in order cost about one hash per unit, as the vendor's check does. With ``k ≈ √n`` both
parts are ``√n`` words: 64 KB for a million-unit chain (docs/PROTOCOL.md 16.3).
"""

from __future__ import annotations

import hashlib
from math import isqrt

from protocol.chain import check_chain, walk
from protocol.crypto import KEY_SIZE, TAG_PAYWORD
from protocol.errors import LocalProtocolError


def default_interval(length: int) -> int:
    """``√n``, rounded down: checkpoints and the cached segment then weigh the same."""
    return max(1, isqrt(length))


class CheckpointedChain:
    """``w_0 .. w_n`` from its seed, keeping every ``interval``-th word and one segment.

    Building it still takes ``n`` hashes (the root is at the bottom of the chain); what it
    saves is memory, paid for by recomputing part of a segment when a payment enters it.
    A segment is filled from its top checkpoint down only as far as a word was asked for,
    so payments going up the chain never hash a word twice until the next segment.
    """

    __slots__ = ("_low", "_marks", "_seed", "_segment", "_segment_at", "interval", "length")

    def __init__(self, seed: bytes, length: int, interval: int | None = None) -> None:
        check_chain(seed, length)
        step = default_interval(length) if interval is None else interval
        if step < 1:
            raise LocalProtocolError(f"a checkpoint interval is at least 1, not {step}")
        self.length = length
        self.interval = step
        self._seed = seed
        top = length - length % step
        word = walk(seed, length, length - top)
        marks = [word]  # w_top, then down to w_0, every ``step`` words
        for mark in range(top, 0, -step):
            word = walk(word, mark, step)
            marks.append(word)
        marks.reverse()
        self._marks = b"".join(marks)
        self._segment = bytearray()  # slot j: w_{q*k+1+j}; valid from slot ``_low`` up
        self._segment_at = -1  # q: the segment held
        self._low = 0  # the lowest index of the segment computed so far

    @property
    def root(self) -> bytes:
        """``w_0``, the value the buyer commits to."""
        return self._marks[:KEY_SIZE]

    @property
    def stored_bytes(self) -> int:
        """Bytes of words held now: checkpoints, seed and the cached segment."""
        return len(self._marks) + len(self._seed) + len(self._segment)

    def word(self, index: int) -> bytes:
        """``w_index``: a checkpoint, or from the segment holding it (extended if need be)."""
        if not 0 <= index <= self.length:
            raise LocalProtocolError(f"index {index} outside 0..{self.length}")
        if index == self.length:
            return self._seed
        segment, offset = divmod(index, self.interval)
        if offset == 0:
            start = segment * KEY_SIZE
            return self._marks[start : start + KEY_SIZE]
        if segment != self._segment_at or index < self._low:
            self._fill(segment, index)
        start = (offset - 1) * KEY_SIZE
        return bytes(self._segment[start : start + KEY_SIZE])

    def _fill(self, segment: int, index: int) -> None:
        """Hash down to ``w_index`` from the lowest word held, or from the segment's top."""
        low = segment * self.interval
        if segment == self._segment_at:
            position = self._low
            at = (position - low - 1) * KEY_SIZE
            word = bytes(self._segment[at : at + KEY_SIZE])
        else:
            position = min(low + self.interval, self.length)
            word = self._seed if position == self.length else self.word(position)
            size = (position - low - 1) * KEY_SIZE
            if len(self._segment) != size:
                self._segment = bytearray(size)
            self._segment_at = segment
        digest = hashlib.sha256
        words = []
        for at_position in range(position, index, -1):
            word = digest(TAG_PAYWORD + at_position.to_bytes(4, "big") + word).digest()
            words.append(word)
        words.reverse()  # w_index .. w_{position-1}, into slots index-low-1 ..
        self._segment[(index - low - 1) * KEY_SIZE : (position - low - 1) * KEY_SIZE] = b"".join(
            words
        )
        self._low = index
