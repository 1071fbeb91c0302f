"""What the broker knows of the scrip it minted, folded from its scrip events.

One record per serial: the minted scrip, what deposits credited and what is still
outstanding, and the deadline after which the rest returns to the buyer
(docs/SCHEMES.md 3.8). Kept apart from the books so the scrip rules live in one place;
``BrokerBooks.apply`` hands the three scrip events here.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from protocol.broker_events import DepositRejected, ScripDeposited, ScripMinted, ScripReturned
from protocol.messages import MAX_PROPERTIES, Scrip
from protocol.money_rules import MAX_TOTAL

if TYPE_CHECKING:
    from protocol.broker_books import Totals

DEFAULT_SCRIP_LIFETIME: Final = 86_400.0
"""Seconds from minting to ``expires``: one day, the most a key period allows."""
DEFAULT_DEPOSIT_GRACE: Final = 2 * 86_400.0
"""Seconds after ``expires`` a vendor may still deposit; then the rest returns."""
MAX_DEPOSIT_GRACE: Final = 366 * 86_400.0
"""The longest deposit grace (s): the audit refuses a deadline further after ``expires``."""
DEFAULT_MAX_SCRIP_VALUE: Final = 10_000
"""The largest mint, in minor units: what a buyer trusts one vendor with at once."""
MAX_DEPOSIT_REJECTIONS: Final = 4
"""``deposit-rejected`` events recorded per serial; later refusals are answered, not kept.

A refused claim on a real serial is evidence (a double spend caught on-line, a vendor
claiming twice); a few per serial prove it, and the cap keeps a vendor, or a buyer trying
double spends at an on-line vendor, from growing the ledger without bound (3.8)."""


@dataclass(slots=True)
class ScripRecord:
    """One serial: the scrip as minted, and where its deposits have brought it."""

    scrip: Scrip
    minted: bytes
    """The ``TaggedScrip`` bytes sent to the buyer."""
    request: bytes
    deadline_ms: int
    """``expires`` plus the deposit grace: deposits until then, the return at it."""
    generation: int | None = None
    """The highest generation credited (``None`` before the first deposit)."""
    credited: int = 0
    outstanding: int = 0
    returned: int = 0
    closed: bool = False
    item: str = ""
    price: int = 0
    change: bytes = b""
    claim: bytes = b""
    """The claim of the deposit that credited ``generation`` (empty: none, or off-line)."""
    rejections: int = 0
    """``deposit-rejected`` events recorded on the serial (at most ``MAX_DEPOSIT_REJECTIONS``)."""

    @property
    def buyer(self) -> str:
        """The only buyer that may spend it."""
        return self.scrip.buyer

    @property
    def vendor(self) -> str:
        """The only vendor that accepts it."""
        return self.scrip.vendor


@dataclass(slots=True)
class ScripState:
    """Every serial minted, the buyers' request ids, and the deadlines still to come."""

    records: dict[int, ScripRecord] = field(default_factory=dict)
    requests: dict[tuple[str, bytes], int] = field(default_factory=dict)
    """``(buyer, request id) → serial``: a repeated request gets the same scrip."""
    deadlines: list[tuple[float, int]] = field(default_factory=list)
    """``(deadline in s, serial)`` as a heap; closed serials are dropped lazily."""
    last_serial: int = 0

    def apply(
        self,
        event: ScripMinted | ScripDeposited | ScripReturned | DepositRejected,
        totals: Totals,
    ) -> None:
        """Fold one scrip event into the records and the books' totals."""
        match event:
            case DepositRejected():
                rejected = self.records.get(event.serial)
                if rejected is not None:
                    rejected.rejections += 1
            case ScripMinted():
                scrip = minted_scrip(event)
                deadline_ms = event.deadline
                self.records[event.serial] = ScripRecord(
                    scrip, event.scrip, event.request, deadline_ms, outstanding=event.value
                )
                self.requests[event.buyer, event.request] = event.serial
                self.last_serial = max(self.last_serial, event.serial)
                heapq.heappush(self.deadlines, (deadline_ms / 1000, event.serial))
                totals.reserved[event.buyer] += event.value
            case ScripDeposited():
                record = self.records[event.serial]
                record.generation = event.generation
                record.credited += event.credit
                record.outstanding = event.outstanding
                record.item, record.price, record.change = event.item, event.price, event.change
                record.claim = event.claim
                totals.reserved[event.buyer] -= event.credit
                totals.debited[event.buyer] += event.credit
                totals.credited[event.vendor] += event.credit
                totals.amounts[event.buyer, event.vendor] += event.credit
            case ScripReturned():
                record = self.records[event.serial]
                record.returned += event.amount
                record.outstanding -= event.amount
                record.closed = True
                totals.reserved[event.buyer] -= event.amount

    def next_due(self) -> float | None:
        """When the next serial with value still outstanding reaches its deadline."""
        deadlines = self.deadlines
        while deadlines and self._settled(deadlines[0][1]):
            heapq.heappop(deadlines)
        return deadlines[0][0] if deadlines else None

    def _settled(self, serial: int) -> bool:
        record = self.records[serial]
        return record.closed or record.outstanding == 0


def minted_scrip(event: ScripMinted) -> Scrip:
    """The generation-0 scrip a ``scrip-minted`` event describes."""
    return Scrip(
        vendor=event.vendor,
        vendor_serial=event.vendor_serial,
        period=event.period,
        serial=event.serial,
        generation=0,
        buyer=event.buyer,
        buyer_serial=event.buyer_serial,
        value=event.value,
        currency=event.currency,
        expires=event.expires,
        properties=list(event.properties),
        nonce=event.nonce,
    )


class ScripTerms(Protocol):
    """The scrip settings of a ``BrokerPolicy``."""

    max_scrip_value: int
    scrip_lifetime: float
    scrip_deposit_grace: float
    scrip_properties: tuple[str, ...]


def scrip_policy_problem(terms: ScripTerms) -> str | None:
    """Why scrip settings cannot be used (``None`` when they can).

    Properties travel in every scrip (at most 8, 1-64 characters each); a lifetime past
    one day would let scrip outlive the keys of its period (3.2).
    """
    properties = terms.scrip_properties
    if len(properties) > MAX_PROPERTIES or not all(1 <= len(p) <= 64 for p in properties):
        return f"scrip properties are at most {MAX_PROPERTIES}, each 1-64 characters"
    if not 0 < terms.scrip_lifetime <= DEFAULT_SCRIP_LIFETIME:
        return "the scrip lifetime is above 0 and at most one day (86400 s)"
    if not 0 <= terms.scrip_deposit_grace <= MAX_DEPOSIT_GRACE:
        return f"the scrip deposit grace is 0..{MAX_DEPOSIT_GRACE:.0f} s (366 days)"
    if not 1 <= terms.max_scrip_value <= MAX_TOTAL:
        return f"the largest scrip is 1..{MAX_TOTAL} minor units"
    return None
