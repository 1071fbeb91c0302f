"""A vendor's terms and chains: what it accepts, and where each accepted chain stands."""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.credentials import VerifiedCommitment
from protocol.crypto import MacKey
from protocol.errors import ItemError, LocalProtocolError
from protocol.messages import OfferItem
from protocol.money_rules import MAX_TOTAL, amount_for
from protocol.wording import counted

log = logging.getLogger("micropay.vendor")


@dataclass(frozen=True, slots=True)
class VendorTerms:
    """What the vendor accepts; published as its offer."""

    unit_value: int = 1
    currency: str = "EUR"
    max_length: int = 100_000
    max_jump: int = 1_000
    online: bool = False
    online_above: int = 0
    """With ``online``: register only chains worth more than this (minor units); 0: every chain.

    The on-line check where the money is: a small chain is taken at once, a large one only
    on the broker's word (docs/SCHEMES.md §1)."""
    items: tuple[OfferItem, ...] = ()
    allowance: bool = False
    """Accept chains off-line under buyers' daily grants, register above them (SCHEMES §4)."""
    offer_lifetime: float = 86_400.0
    redeem_interval: float = 60.0
    redeem_retry: float = 5.0
    redeem_retry_max: float = 300.0
    commit_failure_budget: int = 16
    commit_failure_window: float = 60.0
    scrip: bool = False
    """Take Millicent scrip (``scrip-pay``), advertised as ``Offer.scrip``."""
    scrip_online: bool = False
    """Deposit each scrip payment and serve on the broker's answer (NetCash's serial check)."""
    required_properties: tuple[str, ...] = ()
    """Properties scrip must carry to be taken here (docs/SCHEMES.md 3.1)."""
    scrip_deposit_grace: float = 2 * 86_400.0
    """How long after a scrip's expiry the broker still takes its deposit (its deadline)."""
    scrip_online_timeout: float = 5.0
    """How long an on-line payment waits for ``deposited`` before the buyer is told."""

    def __post_init__(self) -> None:
        """Every item must be one a single payment can buy (payments name one item)."""
        most = amount_for(self.max_jump, self.unit_value)
        if not 0 <= self.online_above <= MAX_TOTAL:
            raise LocalProtocolError(f"online_above is 0..{MAX_TOTAL} minor units")
        names = [offered.item for offered in self.items]
        if len(set(names)) != len(names):
            raise LocalProtocolError("each item may be offered once")
        for offered in self.items:
            if not 1 <= len(offered.item) <= 256 or not 1 <= offered.price <= most:
                raise LocalProtocolError(
                    f"item {offered.item!r} at {offered.price}: items need a name of 1-256"
                    f" characters and a price of 1 to {most} (max jump {self.max_jump}"
                    f" units of {self.unit_value}, what one payment can carry)"
                )


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


def exposure(
    chains: Iterable[VendorChain], now: float, revoked: frozenset[int] = frozenset()
) -> int:
    """All a vendor could claim from one buyer, given that buyer's chains it holds.

    That is every payword held, redeemed or not, plus the unspent rest of every chain that
    can still be paid: not expired, and its certificate not ``revoked`` (a rekeyed buyer's
    old chains end, docs/PROTOCOL.md 11.12). Redeemed paywords count too: the broker caps a
    buyer's total debits, which never go down, so a vendor that forgot them once redeemed
    would let one buyer pass its limit at that one vendor.
    """
    now_ms = int(now * 1000)
    total = 0
    for state in chains:
        commitment = state.verified.commitment
        open_ = now_ms <= commitment.not_after and state.buyer_serial not in revoked
        reach = commitment.length if open_ else state.paid
        total += amount_for(reach, commitment.unit_value)
    return total


def check_item(prices: dict[str, int], item: str, units: int, unit_value: int) -> None:
    """A payment that names an item must be for one on offer, and cover its price.

    ``units`` are those this payment adds (its index minus the last one accepted). The
    caller refuses before changing anything: the vendor keeps neither the payword nor the
    payment, so the units it carried count towards the buyer's next payment.
    """
    price = prices.get(item)
    if price is None:
        raise ItemError(f"no item {item!r} on this vendor's offer")
    paid = amount_for(units, unit_value)
    if paid < price:
        raise ItemError(
            f"{item!r} costs {price};"
            f" this payment adds {counted(units, 'unit')} of {unit_value} = {paid}"
        )
