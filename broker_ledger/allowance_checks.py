"""The audit's ``allowance-grants`` check: MiniPay's daily grants (docs/SCHEMES.md 4.5).

Every grant must be signed by the broker key in force at its sequence number, be the only
one for its buyer and day, follow the amount rule of 4.4 against the balances as folded
up to it, and be released at most once, in full, and not before its day has ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker_ledger.audit_result import AuditReport
from broker_ledger.projections import ReadModels
from protocol.allowance import DAY_MS, grant_amount
from protocol.broker_events import (
    AccountOpened,
    AllowanceGranted,
    AllowanceReleased,
    AllowanceSet,
    AnyBrokerEvent,
)
from protocol.codec import decode_allowance_grant, decode_signed
from protocol.errors import MalformedMessageError
from protocol.messages import AllowanceGrant
from protocol.money_rules import signature_ok
from protocol.scrip import TAG_ALLOWANCE
from protocol.trusted_keys import TrustedKeys

CHECK = "allowance-grants"


@dataclass(slots=True)
class AllowanceChecks:
    """Follows settings, limits and grants; ``check`` runs before the event is folded."""

    broker_id: str
    keys: TrustedKeys
    report: AuditReport
    limits: dict[str, int] = field(default_factory=dict)
    settings: dict[str, int] = field(default_factory=dict)
    grants: dict[tuple[str, int], AllowanceGranted] = field(default_factory=dict)
    released: set[tuple[str, int]] = field(default_factory=set)

    def check(self, seq: int, event: AnyBrokerEvent, models: ReadModels) -> None:
        """Apply the rules to one event (``models``: the balances before it)."""
        match event:
            case AccountOpened():
                self.limits[event.account] = event.credit_limit
            case AllowanceSet():
                if event.account not in self.limits or event.amount < 0:
                    self._fail(seq, f"allowance set for unknown account {event.account}")
                self.settings[event.account] = event.amount
            case AllowanceGranted():
                self._granted(seq, event, models)
            case AllowanceReleased():
                self._released(seq, event)
            case _:
                pass

    def _fail(self, seq: int, detail: str) -> None:
        self.report.fail(seq, CHECK, detail)

    def _granted(self, seq: int, event: AllowanceGranted, models: ReadModels) -> None:
        what = f"grant to {event.buyer} for day {event.day}"
        grant = self._signed(seq, event, what)
        if grant is not None and (
            grant.issuer,
            grant.buyer,
            grant.serial,
            grant.day,
            grant.amount,
        ) != (self.broker_id, event.buyer, event.serial, event.day, event.amount):
            self._fail(seq, f"{what}: the event differs from the signed grant")
        if (event.buyer, event.day) in self.grants:
            self._fail(seq, f"{what}: a second grant for the same day")
        self.grants[event.buyer, event.day] = event
        if event.at // DAY_MS != event.day:
            self._fail(seq, f"{what}: granted on another day")
        self._rule(seq, event, models, what)

    def _signed(self, seq: int, event: AllowanceGranted, what: str) -> AllowanceGrant | None:
        try:
            signed = decode_signed(event.grant)
            grant = decode_allowance_grant(signed.body)
        except MalformedMessageError as exc:
            self._fail(seq, f"{what}: the grant does not decode ({exc})")
            return None
        key = self.keys.for_seq(seq)
        if not signature_ok(key, TAG_ALLOWANCE, signed.body, signed.signature):
            self._fail(seq, f"{what}: not signed by the broker key in force")
        else:
            self.report.signatures_verified += 1
        return grant

    def _rule(self, seq: int, event: AllowanceGranted, models: ReadModels, what: str) -> None:
        """SCHEMES 4.4 at this sequence number: ``K`` is what the reservation implies."""
        setting = self.settings.get(event.buyer, 0)
        limit = self.limits.get(event.buyer, 0)
        balance = models.balances.get(event.buyer)
        debited, reserved = (balance.debited, balance.reserved) if balance else (0, 0)
        if not setting:
            self._fail(seq, f"{what}: no allowance was set")
            return
        if event.amount == 0:
            if event.reserved != 0:
                self._fail(seq, f"{what}: a grant of 0 reserves {event.reserved}")
            return
        vendors, rest = divmod(event.reserved, event.amount)
        if vendors < 1 or rest:
            self._fail(seq, f"{what}: reserves {event.reserved}, not a multiple of the amount")
            return
        expected = grant_amount(setting, limit, debited, reserved, vendors)
        if event.amount != expected:
            self._fail(seq, f"{what}: amount {event.amount}, the rule gives {expected}")
        if debited + reserved + event.reserved > limit:
            self._fail(seq, f"{what}: the reservation passes the credit limit {limit}")

    def _released(self, seq: int, event: AllowanceReleased) -> None:
        what = f"release for {event.buyer} on day {event.day}"
        granted = self.grants.get((event.buyer, event.day))
        if granted is None:
            self._fail(seq, f"{what}: no such grant")
            return
        if (event.buyer, event.day) in self.released:
            self._fail(seq, f"{what}: released twice")
        self.released.add((event.buyer, event.day))
        if event.amount != granted.reserved:
            self._fail(seq, f"{what}: {event.amount} released, {granted.reserved} reserved")
        if event.at < (event.day + 1) * DAY_MS:
            self._fail(seq, f"{what}: released before the day ended")
