"""Closing a billing period: one invoice per buyer, one statement per vendor, balanced.

A period covers every redemption and scrip deposit recorded since the previous period
closed (a scrip credit is a line's amount, with no units). Closing
appends the invoices, statements and a ``PeriodClosed`` marker to the period's own stream
at expected version 0, so closing the same period twice (even concurrently) changes
nothing; closing it again on other terms (another fee) is refused, naming the terms it
was closed on, since the ledger keeps the first close forever. Amounts are integers: the
broker's fee is ``gross * basis_points // 10_000`` per vendor statement, so
``debited == credited + fees`` holds exactly.

A period's name becomes part of the ledger for good, so it is a short token:
``PERIOD_RULE`` (``2026-11``, ``2026-Q4``, ``2026-11-b``).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Final

from broker_ledger.store import ConcurrencyError, EventStore, StreamAppend
from protocol.broker_events import (
    AccountOpened,
    AnyBrokerEvent,
    BillingLine,
    InvoiceIssued,
    PaywordsRedeemed,
    PeriodClosed,
    ScripDeposited,
    SettlementRecorded,
    StatementIssued,
)

BASIS_POINTS = 10_000
PERIOD: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
PERIOD_RULE: Final = (
    "1-32 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit (e.g. 2026-11)"
)


class PeriodError(ValueError):
    """A period name that does not fit ``PERIOD``, or a repeat on other terms."""


def check_period_name(period: str) -> str:
    """``period`` if it is a valid period name, else ``PeriodError`` saying what one is."""
    if not PERIOD.fullmatch(period):
        raise PeriodError(f"a period name is {PERIOD_RULE}, not {period!r:.60}")
    return period


@dataclass(frozen=True, slots=True)
class PeriodSummary:
    """What a closed period billed; ``newly_closed`` is False when it was closed before."""

    period: str
    after_sequence: int
    through_sequence: int
    invoices: int
    statements: int
    debited: int
    credited: int
    fees: int
    newly_closed: bool
    fee_basis_points: int = 0


def fee_of(gross: int, basis_points: int) -> int:
    """The broker's fee on a vendor's gross, rounded down to a whole minor unit."""
    return gross * basis_points // BASIS_POINTS


Credit = PaywordsRedeemed | ScripDeposited
"""What a period bills: paywords redeemed and scrip deposited."""


def bill(  # noqa: PLR0913 - the period's bounds and terms
    redemptions: list[Credit],
    period: str,
    after: int,
    through: int,
    basis_points: int,
    currency_of: dict[str, str],
    at: int,
) -> list[AnyBrokerEvent]:
    """The invoices, statements and closing marker for a set of redemptions and deposits."""
    units: dict[tuple[str, str], int] = defaultdict(int)
    amounts: dict[tuple[str, str], int] = defaultdict(int)
    for event in redemptions:
        if isinstance(event, ScripDeposited):
            amounts[event.buyer, event.vendor] += event.credit  # scrip pays no paywords
        else:
            units[event.buyer, event.vendor] += event.units
            amounts[event.buyer, event.vendor] += event.amount
    by_buyer: dict[str, list[BillingLine]] = defaultdict(list)
    by_vendor: dict[str, list[BillingLine]] = defaultdict(list)
    for buyer, vendor in sorted(amounts):
        by_buyer[buyer].append(BillingLine(vendor, units[buyer, vendor], amounts[buyer, vendor]))
    for vendor, buyer in sorted((v, b) for b, v in amounts):
        by_vendor[vendor].append(BillingLine(buyer, units[buyer, vendor], amounts[buyer, vendor]))
    events: list[AnyBrokerEvent] = []
    for buyer, lines in by_buyer.items():
        total = sum(line.amount for line in lines)
        events.append(
            InvoiceIssued(
                at=at,
                period=period,
                buyer=buyer,
                currency=currency_of.get(buyer, "EUR"),
                lines=lines,
                total=total,
            )
        )
    fees = 0
    for vendor, lines in by_vendor.items():
        gross = sum(line.amount for line in lines)
        fee = fee_of(gross, basis_points)
        fees += fee
        events.append(
            StatementIssued(
                at=at,
                period=period,
                vendor=vendor,
                currency=currency_of.get(vendor, "EUR"),
                lines=lines,
                gross=gross,
                fee=fee,
                net=gross - fee,
            )
        )
    debited = sum(amounts.values())
    events.append(
        PeriodClosed(
            at=at,
            period=period,
            after_sequence=after,
            through_sequence=through,
            fee_basis_points=basis_points,
            debited=debited,
            credited=debited - fees,
            fees=fees,
        )
    )
    return events


async def close_period(
    store: EventStore, period: str, *, at: int, basis_points: int = 0
) -> PeriodSummary:
    """Close ``period`` over everything redeemed since the last close.

    Idempotent: closing it again on the same terms returns the first close's summary;
    on other terms, ``PeriodError`` names the terms it was closed on.
    """
    check_period_name(period)
    if not 0 <= basis_points <= BASIS_POINTS:
        raise ValueError("the fee is 0..10000 basis points")
    stream = f"period:{period}"
    existing = await _summary(store, stream)
    if existing is not None:
        return _same_terms(existing, basis_points)
    await store.flush()
    last = await store.last_of_type("period-closed")
    after = 0
    if last is not None:
        after = store.decode_as(PeriodClosed, last).through_sequence
    through = store.head[0]
    rows = await store.read_type("paywords-redeemed", after, through)
    redemptions: list[Credit] = [store.decode_as(PaywordsRedeemed, row) for row in rows]
    deposits = await store.read_type("scrip-deposited", after, through)
    redemptions.extend(store.decode_as(ScripDeposited, row) for row in deposits)
    currencies = await _currencies(store)
    events = bill(redemptions, period, after, through, basis_points, currencies, at)
    try:
        await store.append_many([StreamAppend(stream, events, expected_version=0)])
    except ConcurrencyError:
        pass  # closed by somebody else meanwhile: theirs stands
    else:
        summary = await _summary(store, stream)
        assert summary is not None  # noqa: S101 - just written
        return dataclasses.replace(summary, newly_closed=True)
    summary = await _summary(store, stream)
    if summary is None:
        raise ConcurrencyError(f"period {period} could not be closed")
    return _same_terms(summary, basis_points)


def _same_terms(closed: PeriodSummary, basis_points: int) -> PeriodSummary:
    """The earlier close of a period, if asked for again on its terms."""
    if closed.fee_basis_points != basis_points:
        raise PeriodError(
            f"period {closed.period} was already closed with a fee of"
            f" {closed.fee_basis_points} basis points (through ledger event"
            f" {closed.through_sequence}: {closed.invoices} invoices, {closed.statements}"
            f" statements, {closed.debited} debited); it cannot be closed again with"
            f" {basis_points}"
        )
    return closed


async def _summary(store: EventStore, stream: str) -> PeriodSummary | None:
    rows = await store.read_stream(stream)
    if not rows:
        return None
    events = [store.decode(row) for row in rows]
    marker = events[-1]
    if not isinstance(marker, PeriodClosed):
        return None
    return PeriodSummary(
        period=marker.period,
        after_sequence=marker.after_sequence,
        through_sequence=marker.through_sequence,
        invoices=sum(isinstance(e, InvoiceIssued) for e in events),
        statements=sum(isinstance(e, StatementIssued) for e in events),
        debited=marker.debited,
        credited=marker.credited,
        fees=marker.fees,
        newly_closed=False,
        fee_basis_points=marker.fee_basis_points,
    )


async def _currencies(store: EventStore) -> dict[str, str]:
    currencies = {}
    for row in await store.read_type("account-opened"):
        event = store.decode(row)
        if isinstance(event, AccountOpened):
            currencies[event.account] = event.currency
    return currencies


async def record_settlement(
    store: EventStore, account: str, amount: int, reference: str, *, at: int
) -> None:
    """Record money that moved outside the system (an invoice paid, a payout made)."""
    if amount <= 0:
        raise ValueError("a settlement moves a positive amount")
    if await store.stream_version(f"account:{account}") == 0:
        raise ValueError(f"no account {account!r}")
    await store.append_events(
        [SettlementRecorded(at=at, account=account, amount=amount, reference=reference)]
    )
