"""The buyer's daily grant: fetched once a day, attached to commits for vendors that take it.

A commit to such a vendor waits for the day's grant (one ``allowance?`` round trip), then
goes out with it; without a grant (the broker refused, none is set) it goes out bare and
the vendor registers the chain on-line (docs/SCHEMES.md 4.2).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from protocol.allowance import DAY_MS, day_of
from protocol.buyer_channel import Channel
from protocol.messages import AllowanceGrant
from protocol.money_rules import amount_for

ALLOWANCE_CORR: Final = b"allowance"
"""The correlation id of ``allowance?``, so the broker's refusal ends the wait."""
ASK_AGAIN: Final = 2.0
"""Seconds before an unanswered ``allowance?`` is sent again (with the commit's retry)."""


@dataclass(slots=True)
class GrantCache:
    """Today's grant (or that there is none), and the commits waiting for it."""

    signed: dict[int, bytes] = field(default_factory=dict)
    """Per day: the grant's ``Signed`` bytes; ``b""``: none today (refused)."""
    grants: dict[int, AllowanceGrant] = field(default_factory=dict)
    waiting: set[bytes] = field(default_factory=set)
    asked_at: float | None = None

    def known(self, now: float) -> bool:
        """Whether today's answer is in: a grant, or that there is none."""
        return day_of(now) in self.signed

    def today(self, now: float) -> bytes:
        """The grant bytes to attach today (``b""``: none)."""
        return self.signed.get(day_of(now), b"")

    def grant(self, now: float) -> AllowanceGrant | None:
        """Today's grant, if the broker gave one."""
        return self.grants.get(day_of(now))

    def should_ask(self, now: float) -> bool:
        """Whether to send ``allowance?`` now (not while one is fresh in flight)."""
        if self.asked_at is not None and now - self.asked_at < ASK_AGAIN:
            return False
        self.asked_at = now
        return True

    def answered(self, now: float, signed: bytes, grant: AllowanceGrant | None) -> set[bytes]:
        """Keep today's answer; returns the channels whose commits may now go."""
        day = day_of(now)
        self.signed = {day: signed}  # older days are of no use any more
        self.grants = {} if grant is None else {day: grant}
        self.asked_at = None
        waiting, self.waiting = self.waiting, set()
        return waiting


def committed_today(channels: Iterable[Channel], vendor: str, now: float) -> int:
    """The value of this wallet's chains to ``vendor`` that end today.

    Those are the chains a vendor may have counted against today's grant: what the wallet
    knows of ``today(buyer)`` there (the vendor may have registered some instead).
    """
    day = day_of(now)
    return sum(
        amount_for(c.chain.length, c.unit_value)
        for c in channels
        if c.vendor == vendor and (c.not_after - 1) // DAY_MS == day
    )


def offline_length(grant: AllowanceGrant | None, used: int, unit_value: int, units: int) -> int:
    """How long a chain to a vendor that takes grants should be, for ``units`` to pay.

    Within what is left of today's grant: as long as that allows, so the vendor takes it
    at once, without the broker. Above it: ``units``, or a grant's worth if more, since the
    broker reserves the whole chain against a limit that the day's grant already holds
    part of. Without a grant: no bound from here.
    """
    if grant is None:
        return 2**32 - 1
    room = (grant.amount - used) // unit_value
    return room if room >= units else max(units, grant.amount // unit_value)
