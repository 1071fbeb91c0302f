"""What the HTML audit report plots, gathered during the audit's own pass.

Aggregates only, so memory stays bounded however long the ledger is: redemptions go
into time buckets whose width doubles whenever there are too many (the series is
downsampled as it is read, not afterwards), sizes into power-of-two bins, and money per
account into one small record per account (the audit already keeps one per account).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from broker_ledger.projections import ReadModels
from protocol.broker_events import AnyBrokerEvent, PaywordsRedeemed, PeriodClosed, ScripDeposited

MAX_BUCKETS: Final = 240
MAX_PERIODS: Final = 120
FIRST_WIDTH_MS: Final = 1_000


@dataclass(slots=True)
class Traffic:
    """Redemptions, units, scrip deposits and amount for one party or one time bucket."""

    redemptions: int = 0
    units: int = 0
    amount: int = 0
    deposits: int = 0
    """Scrip deposits credited; their credit is in ``amount``, with no units."""

    def add(self, units: int, amount: int) -> None:
        """Count one redemption."""
        self.redemptions += 1
        self.units += units
        self.amount += amount

    def merge(self, other: Traffic) -> None:
        """Fold another record into this one (when buckets widen)."""
        self.redemptions += other.redemptions
        self.units += other.units
        self.amount += other.amount
        self.deposits += other.deposits

    def deposit(self, credit: int) -> None:
        """Count one scrip deposit."""
        self.deposits += 1
        self.amount += credit


@dataclass(frozen=True, slots=True)
class PeriodFees:
    """One closed billing period as its marker states it."""

    period: str
    at: int
    debited: int
    fees: int


@dataclass(frozen=True, slots=True)
class AccountMoney:
    """An account's recomputed balance columns."""

    account: str
    debited: int
    credited: int
    fees: int


@dataclass(slots=True)
class ReportData:
    """Everything the HTML report draws, filled event by event."""

    width_ms: int = FIRST_WIDTH_MS
    buckets: dict[int, Traffic] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    buyers: dict[str, Traffic] = field(default_factory=dict)
    vendors: dict[str, Traffic] = field(default_factory=dict)
    periods: list[PeriodFees] = field(default_factory=list)
    periods_total: int = 0
    accounts: list[AccountMoney] = field(default_factory=list)

    def add(self, event: AnyBrokerEvent) -> None:
        """Take what the report needs from one decoded event."""
        if isinstance(event, PaywordsRedeemed):
            units, amount = event.units, event.amount
            slot = event.at // self.width_ms
            bucket = self.buckets.get(slot)
            if bucket is None:
                bucket = self.buckets[slot] = Traffic()
                if len(self.buckets) > MAX_BUCKETS:
                    self._widen()
                    bucket = self.buckets[event.at // self.width_ms]
            bucket.add(units, amount)
            size = max(units, 1).bit_length() - 1
            self.sizes[size] = self.sizes.get(size, 0) + 1
            buyer = self.buyers.get(event.buyer)
            if buyer is None:
                buyer = self.buyers[event.buyer] = Traffic()
            buyer.add(units, amount)
            vendor = self.vendors.get(event.vendor)
            if vendor is None:
                vendor = self.vendors[event.vendor] = Traffic()
            vendor.add(units, amount)
        elif isinstance(event, ScripDeposited) and event.credit:
            self._deposit(event)
        elif isinstance(event, PeriodClosed):
            self.periods_total += 1
            self.periods.append(PeriodFees(event.period, event.at, event.debited, event.fees))
            if len(self.periods) > MAX_PERIODS:
                del self.periods[0]

    def _deposit(self, event: ScripDeposited) -> None:
        """A scrip deposit's credit, for its buyer and its vendor (no units, no bucket)."""
        for parties, name in ((self.buyers, event.buyer), (self.vendors, event.vendor)):
            party = parties.get(name)
            if party is None:
                party = parties[name] = Traffic()
            party.deposit(event.credit)

    def _widen(self) -> None:
        """Double the bucket width until the series fits again."""
        while len(self.buckets) > MAX_BUCKETS:
            self.width_ms *= 2
            merged: dict[int, Traffic] = {}
            for slot, traffic in self.buckets.items():
                into = merged.get(slot // 2)
                if into is None:
                    merged[slot // 2] = traffic
                else:
                    into.merge(traffic)
            self.buckets = merged

    def finish(self, models: ReadModels) -> None:
        """Take the per-account money from the read models the audit recomputed."""
        self.accounts = [
            AccountMoney(name, row.debited, row.credited, row.fees)
            for name, row in models.balances.items()
        ]
