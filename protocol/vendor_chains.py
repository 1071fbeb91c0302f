"""A vendor's terms and chains: what it accepts, and where each accepted chain stands."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from protocol.credentials import VerifiedCommitment
from protocol.crypto import MacKey
from protocol.messages import OfferItem

log = logging.getLogger("micropay.vendor")


@dataclass(frozen=True, slots=True)
class VendorTerms:
    """What the vendor accepts; published as its offer."""

    unit_value: int = 1
    currency: str = "EUR"
    max_length: int = 100_000
    max_jump: int = 1_000
    online: bool = False
    items: tuple[OfferItem, ...] = ()
    offer_lifetime: float = 86_400.0
    redeem_interval: float = 60.0
    redeem_retry: float = 5.0
    redeem_retry_max: float = 300.0
    commit_failure_budget: int = 16
    commit_failure_window: float = 60.0


class ChainState(enum.Enum):
    """Where a chain stands with the broker; payments are accepted in every state."""

    ACTIVE = "active"
    """No redemption outstanding: paywords beyond ``redeemed`` wait for the redeem timer."""
    REDEEMING = "redeeming"
    """A redemption is out and unanswered; the timer resends it with backoff."""
    RECONFIRMING = "reconfirming"
    """Asking the broker again what it credited (a restore on either side), until it answers."""


@dataclass(slots=True)
class VendorChain:
    """One accepted commitment: the last payword held and what the broker has credited."""

    verified: VerifiedCommitment
    key: MacKey
    buyer: str
    buyer_serial: int
    index: int
    word: bytes
    redeemed: int = 0
    redeem_due: float = 0.0
    redeem_backoff: float = 0.0
    receipt_seq: int = 0  # the ledger head the broker's latest receipt for it carried
    state: ChainState = ChainState.ACTIVE

    @property
    def paid(self) -> int:
        """The index payments must exceed: held here, or already credited by the broker."""
        return max(self.index, self.redeemed)

    @property
    def owes_redemption(self) -> bool:
        """Paywords beyond the broker's credit, or a reconfirmation, are due at the broker."""
        return self.index > self.redeemed or self.state is ChainState.RECONFIRMING

    def set_state(self, state: ChainState) -> None:
        """The one place a chain changes state, so each change is in the debug log."""
        if state is not self.state:
            log.debug("chain %s of %s: %s -> %s", self.verified.id.hex()[:16], self.buyer,
                      self.state.value, state.value)  # fmt: skip
            self.state = state


@dataclass(slots=True)
class PendingCommitment:
    """A commitment waiting for the broker's on-line verdict."""

    verified: VerifiedCommitment
    key: MacKey
    buyer: str
    corr: bytes
    retry_due: float = 0.0
    backoff: float = 0.0
