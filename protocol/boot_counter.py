"""Replay counters for a device without a real-time clock: a boot epoch in the high bits.

Receivers ask only that a stream's counters never repeat and rise densely (docs/PROTOCOL.md
10.1): nothing compares a counter with the time. The clock-derived default gets "higher than
before the restart" from a clock that survives restarts; a device without one gets it from
one persisted number, its boot epoch ``E``, raised and written once per start before the
first message. Every stream then starts at ``E << 40`` and counts up by one, so each start's
counters lie above everything the previous starts sent on any stream, unless one stream sent
2^40 messages in one start (docs/PROTOCOL.md 16.2).
"""

from __future__ import annotations

from protocol.envelope import CounterSource
from protocol.errors import LocalProtocolError

EPOCH_SHIFT = 40
"""Bits below the epoch: the messages one stream may send in one start (2^40)."""
MAX_EPOCH = 2 ** (63 - EPOCH_SHIFT) - 1
"""The last epoch whose counters stay within the header's 2^63 - 1: 8,388,607 starts."""


def boot_counter(epoch: int) -> CounterSource:
    """The counter source of a start whose epoch ``epoch`` is already durable.

    ``epoch`` must be higher than that of every earlier start of this account: write
    ``E + 1`` to flash, wait for the write, then use it.
    """
    if not 1 <= epoch <= MAX_EPOCH:
        raise LocalProtocolError(f"a boot epoch is 1..{MAX_EPOCH}, not {epoch}")
    first = epoch << EPOCH_SHIFT

    def source(_now: float) -> int:
        return first

    return source
