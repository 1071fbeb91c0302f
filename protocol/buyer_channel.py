"""A buyer's channel: one commitment to one vendor, and where it stands in its life cycle."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from protocol.chain import PaywordChain
from protocol.crypto import MacKey

log = logging.getLogger("micropay.buyer")


class ChannelState(enum.Enum):
    """Where a channel stands; what the retransmission timer does depends on it."""

    COMMITTING = "committing"
    """The commit is out (or the channel was restored); the vendor has not acknowledged it."""
    OPEN = "open"
    """The vendor acknowledged the commitment: payments flow, unacknowledged ones are resent."""
    REFUSED = "refused"
    """The vendor refused a (re)transmission; the next timer round counts as futile."""
    ABANDONED = "abandoned"
    """Refused round after round: retransmission stopped until the next payment."""


@dataclass(slots=True)
class Channel:
    """One commitment to one vendor, and how far it has been spent and acknowledged."""

    id: bytes
    vendor: str
    chain: PaywordChain
    seed: bytes
    commitment: bytes
    unit_value: int
    max_jump: int
    key: MacKey
    spent: int = 0
    reserved: int = 0  # durable: the wallet says "spent up to here"; no payword above left
    resumed: bool = False  # restored, not paid on since: the vendor's receipt says where it is
    stepped_from: int = 0  # the index the newest payment step went up from
    acknowledged: int = -1  # the highest index the vendor acknowledged (0: the commit)
    retry_due: float | None = None
    backoff: float = 0.0
    last_item: str = ""
    futile_rounds: int = 0
    state: ChannelState = ChannelState.COMMITTING
    not_after: int = 2**63 - 1  # the commitment's, in ms: no payment is accepted after it
    ended: bool = False  # made under a certificate since replaced (a rekey): pay no more on it

    @property
    def remaining(self) -> int:
        """Units still payable on this chain."""
        return self.chain.length - self.spent

    def payable(self, units: int, now: float) -> bool:
        """Whether ``units`` more fit on this chain and it has not expired."""
        return not self.ended and units <= self.remaining and int(now * 1000) <= self.not_after

    def reserve(self, target: int, ahead: int) -> int | None:
        """Reserve up to ``target`` before paying it; the new reservation to persist, or ``None``.

        Within the reservation nothing needs writing. Past it, the reservation grows to
        ``ahead`` units beyond what was spent (to ``target`` if that is further), capped at
        the chain's length: one write covers the next ``ahead`` units, and a crash can cost
        no more than those. ``ahead`` of 0 or 1 writes every payment.
        """
        if target <= self.reserved:
            return None
        self.reserved = min(self.chain.length, max(target, self.spent + ahead))
        return self.reserved

    def release(self) -> int:
        """Bring the reservation back to what was spent: nothing above it has left."""
        self.reserved = self.spent
        return self.reserved

    def set_state(self, state: ChannelState) -> None:
        """The one place a channel changes state, so each change is in the debug log."""
        if state is not self.state:
            log.debug("channel %s to %s: %s -> %s", self.id.hex()[:16], self.vendor,
                      self.state.value, state.value)  # fmt: skip
            self.state = state

    def resume(self) -> None:
        """Leave ``REFUSED`` or ``ABANDONED`` for the state the acknowledgements show."""
        self.set_state(ChannelState.OPEN if self.acknowledged >= 0 else ChannelState.COMMITTING)
