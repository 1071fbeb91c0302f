"""The audit's scrip rules (docs/SCHEMES.md 3.10): serials, arithmetic, limits, conservation.

Everything a scrip event moves follows from values the ledger ties together: the minted
value, each deposit's spent and change scrip, and the outstanding value before it. The
tags cannot be checked (their keys derive from the broker's private agreement key), and
the money does not depend on them.

Each ``scrip-minted`` event carries the policy it was minted under (its deadline and the
largest mint), so the audit needs no broker settings. Its period must be the day of its
``at``, its expiry after ``at`` and within its period's keys (3.2), and its deadline at
most ``MAX_DEPOSIT_GRACE`` (366 days) after the expiry.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from broker_ledger.audit_result import AuditReport
from broker_ledger.projections import ReadModels
from protocol.broker_events import AccountOpened, ScripDeposited, ScripMinted, ScripReturned
from protocol.codec import decode_scrip, decode_tagged_scrip
from protocol.errors import MalformedMessageError
from protocol.messages import Scrip
from protocol.scrip import PERIOD_MS
from protocol.scrip_state import MAX_DEPOSIT_GRACE, minted_scrip

SERIALS = "scrip-serials"
ARITHMETIC = "scrip-arithmetic"
LIMITS = "scrip-limits"
CONSERVATION = "scrip-conservation"
CHECKS = (CONSERVATION, SERIALS, ARITHMETIC, LIMITS)

ScripEvent = ScripMinted | ScripDeposited | ScripReturned
MAX_DEPOSIT_GRACE_MS = int(MAX_DEPOSIT_GRACE * 1000)


@dataclass(slots=True)
class _Serial:
    scrip: Scrip
    deadline: int
    generation: int = -1
    credited: int = 0
    returned: int = 0
    outstanding: int = 0
    closed: bool = False


class ScripAudit:
    """Follows every serial through its events, in sequence order."""

    def __init__(self, report: AuditReport) -> None:
        self.report = report
        self._serials: dict[int, _Serial] = {}
        self._last_serial = 0

    def check(
        self, seq: int, event: ScripEvent, models: ReadModels, accounts: dict[str, AccountOpened]
    ) -> None:
        """Apply the rules to one scrip event, before it is folded into ``models``."""
        match event:
            case ScripMinted():
                self._minted(seq, event, models, accounts)
            case ScripDeposited():
                self._deposited(seq, event)
            case ScripReturned():
                self._returned(seq, event)

    def _fail(self, seq: int, check: str, detail: str) -> None:
        self.report.fail(seq, check, detail)

    def _known(self, seq: int, event: ScripDeposited | ScripReturned) -> _Serial | None:
        state = self._serials.get(event.serial)
        if state is None:
            self._fail(seq, SERIALS, f"serial {event.serial} was never minted")
            return None
        if state.closed:
            self._fail(seq, SERIALS, f"serial {event.serial} has an event after its return")
        if (event.buyer, event.vendor) != (state.scrip.buyer, state.scrip.vendor):
            self._fail(seq, ARITHMETIC, f"serial {event.serial}: buyer or vendor differs")
        return state

    # --- per event ----------------------------------------------------------------------------

    def _minted(
        self, seq: int, event: ScripMinted, models: ReadModels, accounts: dict[str, AccountOpened]
    ) -> None:
        if event.serial in self._serials:
            self._fail(seq, SERIALS, f"serial {event.serial} minted twice")
            return
        if event.serial != self._last_serial + 1:
            self._fail(seq, SERIALS, f"serial {event.serial} follows {self._last_serial}")
        self._last_serial = max(self._last_serial, event.serial)
        scrip = minted_scrip(event)
        if _scrip_of(event.scrip) != scrip:
            self._fail(
                seq, ARITHMETIC, f"serial {event.serial}: minted bytes differ from the event"
            )
        if event.deadline < event.expires:
            self._fail(seq, SERIALS, f"serial {event.serial}: deadline before it expires")
        for problem in _timing_problems(event):
            self._fail(seq, LIMITS, f"serial {event.serial}: {problem}")
        self._serials[event.serial] = _Serial(scrip, event.deadline, outstanding=event.value)
        self.report.scrip_serials += 1
        self.report.scrip_minted += event.value
        self._limits(seq, event, models, accounts)

    def _limits(
        self, seq: int, event: ScripMinted, models: ReadModels, accounts: dict[str, AccountOpened]
    ) -> None:
        """The mint kept the buyer within its credit limit and the mint within the largest."""
        buyer, vendor = accounts.get(event.buyer), accounts.get(event.vendor)
        if buyer is None or buyer.role != "buyer" or vendor is None or vendor.role != "vendor":
            self._fail(seq, LIMITS, f"serial {event.serial}: buyer or vendor has no such account")
            return
        if event.value > event.max_value:
            self._fail(seq, LIMITS, f"serial {event.serial}: {event.value} > {event.max_value}")
        if {buyer.currency, vendor.currency} != {event.currency}:
            self._fail(seq, LIMITS, f"serial {event.serial}: currency differs from the accounts'")
        balance = models.balances.get(event.buyer)
        exposure = event.value + (balance.debited + balance.reserved if balance else 0)
        if exposure > buyer.credit_limit:
            self._fail(
                seq,
                LIMITS,
                f"serial {event.serial}: exposure {exposure} over limit {buyer.credit_limit}",
            )

    def _deposited(self, seq: int, event: ScripDeposited) -> None:
        state = self._known(seq, event)
        if state is None:
            return
        self.report.scrip_deposits += 1
        if event.generation <= state.generation:
            self._fail(
                seq, SERIALS, f"serial {event.serial}: generation {event.generation} credited again"
            )
        if event.at > state.deadline:
            self._fail(seq, SERIALS, f"serial {event.serial}: deposit after its deadline")
        for problem in _deposit_problems(event, state):
            self._fail(seq, ARITHMETIC, f"serial {event.serial}: {problem}")
        state.generation = max(state.generation, event.generation)
        state.credited += event.credit
        state.outstanding = event.outstanding
        self.report.scrip_credited += event.credit

    def _returned(self, seq: int, event: ScripReturned) -> None:
        state = self._known(seq, event)
        if state is None:
            return
        if event.at < state.deadline:
            self._fail(seq, SERIALS, f"serial {event.serial}: returned before its deadline")
        if event.amount != state.outstanding:
            self._fail(
                seq,
                ARITHMETIC,
                f"serial {event.serial}: returned {event.amount}, {state.outstanding} outstanding",
            )
        state.returned += event.amount
        state.outstanding = 0
        state.closed = True
        self.report.scrip_returned += event.amount

    # --- ledger-wide --------------------------------------------------------------------------

    def finish(self) -> None:
        """Per serial and over all: minted = credited + returned + outstanding."""
        report = self.report
        outstanding = 0
        for serial, state in self._serials.items():
            outstanding += state.outstanding
            parts = state.credited + state.returned + state.outstanding
            if parts != state.scrip.value:
                report.fail(
                    None,
                    CONSERVATION,
                    f"serial {serial}: minted {state.scrip.value} != credited {state.credited}"
                    f" + returned {state.returned} + outstanding {state.outstanding}",
                )
        report.scrip_outstanding = outstanding
        total = report.scrip_credited + report.scrip_returned + outstanding
        if total != report.scrip_minted:
            report.fail(
                None, CONSERVATION, f"minted {report.scrip_minted} != {total} accounted for"
            )


def _timing_problems(event: ScripMinted) -> list[str]:
    """How a mint's period, expiry and deadline break the key schedule (3.2) and the policy.

    The period is the UTC day of minting, the scrip outlives neither its minting nor the
    day after its period (its keys' last), and the deposit grace is at most a year.
    """
    problems = []
    if event.period != event.at // PERIOD_MS:
        problems.append(f"period {event.period} is not the day it was minted ({event.at})")
    if event.expires > (event.period + 2) * PERIOD_MS:
        problems.append(f"expires {event.expires} after its period's keys end")
    if event.expires <= event.at:
        problems.append(f"expires {event.expires}, not after it was minted ({event.at})")
    if event.deadline > event.expires + MAX_DEPOSIT_GRACE_MS:
        problems.append(f"deadline {event.deadline} more than a year after it expires")
    return problems


def _scrip_of(tagged: bytes) -> Scrip | None:
    try:
        return decode_scrip(decode_tagged_scrip(tagged).body)
    except MalformedMessageError:
        return None


def _deposit_problems(event: ScripDeposited, state: _Serial) -> list[str]:
    """What does not add up in one deposit, against the serial as it stood before it."""
    spent = _scrip_of(event.spent)
    if spent is None:
        return ["the spent scrip does not decode"]
    problems = []
    minted = state.scrip
    if msgspec.structs.replace(spent, generation=0, value=minted.value) != minted:
        problems.append("the spent scrip differs from the minted one")
    if spent.generation != event.generation:
        problems.append("the generation differs from the spent scrip's")
    if not event.price <= spent.value <= state.outstanding:
        problems.append(
            f"price {event.price}, spent {spent.value}, {state.outstanding} outstanding"
        )
    if event.outstanding != spent.value - event.price:
        problems.append(f"outstanding {event.outstanding} is not spent value less the price")
    if event.credit != state.outstanding - event.outstanding:
        problems.append(f"credit {event.credit} is not what the outstanding value fell by")
    change = _scrip_of(event.change) if event.change else None
    if event.outstanding == 0:
        if event.change:
            problems.append("change made from scrip that was used up")
    elif change != msgspec.structs.replace(
        spent, generation=spent.generation + 1, value=event.outstanding
    ):
        problems.append("the change is not the next generation worth what is outstanding")
    return problems
