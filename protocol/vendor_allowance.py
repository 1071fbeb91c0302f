"""A vendor's count of what it accepted off-line under buyers' daily grants (SCHEMES 4.3).

``today(buyer)`` is the value of the chains accepted off-line from a buyer during the
grant's day. It is counted in full when a chain is accepted, so the bound holds before
anything is paid, and the store keeps it with the chains (rebuilt with ``restore``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from protocol.allowance import day_of, offline_refusal, verify_grant
from protocol.credentials import VerifiedCommitment
from protocol.errors import AllowanceError
from protocol.money_rules import amount_for
from protocol.trusted_keys import TrustedKeys

log = logging.getLogger("micropay.vendor")


@dataclass(slots=True)
class AllowanceCounts:
    """Per (buyer, day): the value of the chains accepted off-line under that day's grant."""

    used: dict[tuple[str, int], int] = field(default_factory=dict)

    def today(self, buyer: str, now: float) -> int:
        """What ``buyer`` has used of today's grant at this vendor."""
        return self.used.get((buyer, day_of(now)), 0)

    def restore(self, buyer: str, day: int, amount: int) -> None:
        """Count a stored chain again (after a restart)."""
        if amount:
            self.used[buyer, day] = self.used.get((buyer, day), 0) + amount

    def decide(
        self, grant: bytes, verified: VerifiedCommitment, now: float, keys: TrustedKeys, broker: str
    ) -> int:
        """The value to count if the chain is accepted off-line now; 0: register it instead.

        A chain taken off-line is counted here at once: the caller accepts it in the same
        call, before any other commit can see today's count.
        """
        if not grant:
            return 0
        buyer = verified.certificate.subject
        try:
            opened = verify_grant(grant, keys, broker)
        except AllowanceError as exc:
            log.info("grant from %s not taken (%s): registering", buyer, exc)
            return 0
        commitment = verified.commitment
        used = self.today(buyer, now)
        refusal = offline_refusal(opened, verified.certificate, commitment, now, used)
        if refusal is not None:
            log.debug("chain of %s goes on-line: %s", buyer, refusal)
            return 0
        value = amount_for(commitment.length, commitment.unit_value)
        self.used[buyer, opened.day] = used + value
        self._forget_before(opened.day)
        return value

    def _forget_before(self, day: int) -> None:
        """Past days no longer matter: a chain ends with the day it was counted on."""
        for key in [key for key in self.used if key[1] < day]:
            del self.used[key]
