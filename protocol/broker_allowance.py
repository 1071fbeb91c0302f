"""The broker's side of MiniPay's daily allowance: grant, re-send, release (SCHEMES §4).

One grant per buyer and UTC day, recorded before it is sent and sent again as recorded.
Its amount follows the credit the buyer has left, and it reserves ``K * amount`` of that
credit until the day ends, so on-line registrations and mints during the day cannot use
what vendors may accept off-line.
"""

from __future__ import annotations

from protocol.allowance import day_of, grant_amount, sign_grant
from protocol.broker_books import ms
from protocol.broker_events import AllowanceGranted, AllowanceReleased, AllowanceSet
from protocol.broker_rekey import BrokerRekey
from protocol.crypto import MacKey
from protocol.envelope import Parsed
from protocol.errors import AllowanceError, LocalProtocolError
from protocol.messages import Allowance, AllowanceGrant
from protocol.money_rules import MAX_TOTAL


class BrokerAllowance(BrokerRekey):
    """``allowance?`` requests, the day-end release and the operator's setting."""

    # --- the operator --------------------------------------------------------------------------

    def set_allowance(self, account: str, amount: int, now: float) -> AllowanceSet:
        """Set a buyer's daily allowance (0: none); persist the returned event.

        It applies from the next grant: a grant already made today stands until midnight.
        """
        holder = self.accounts.get(account)
        if holder is None or holder.role != "buyer":
            raise LocalProtocolError(f"{account!r} is not a buyer account")
        if not 0 <= amount <= MAX_TOTAL:
            raise LocalProtocolError(f"the allowance is 0..{MAX_TOTAL} minor units")
        event = AllowanceSet(at=ms(now), account=account, amount=amount)
        self.apply(event)
        return event

    # --- requests ------------------------------------------------------------------------------

    def grant_allowance(self, parsed: Parsed, key: MacKey, now: float) -> None:
        """Answer ``allowance?`` with today's grant: the recorded one, or a new one.

        A buyer without an allowance gets an empty ``grant``: nothing is recorded.
        """
        account = self.accounts[parsed.header.sender]
        if account.role != "buyer" or not account.serial:
            raise AllowanceError("only an enrolled buyer has an allowance")
        if account.serial in self.revoked:
            raise AllowanceError(f"certificate {account.serial} is revoked")
        day, corr = day_of(now), parsed.header.corr
        granted = self.allowances.grants.get((account.name, day))
        setting = self.allowances.settings.get(account.name, 0)
        if granted is None and not setting:
            # No allowance: not a refusal, just nothing to attach (every chain goes on-line).
            self._reply_with_head(parsed, lambda head: Allowance(b"", head), key, now, corr=corr)
            return
        if granted is None:
            totals, vendors = self.totals, self.policy.allowance_vendors
            debited, reserved = totals.debited[account.name], totals.reserved[account.name]
            amount = grant_amount(setting, account.credit_limit, debited, reserved, vendors)
            grant = AllowanceGrant(
                self.account, account.name, account.serial, day, amount, account.currency
            )
            granted = AllowanceGranted(
                at=ms(now),
                buyer=account.name,
                serial=account.serial,
                day=day,
                amount=amount,
                reserved=vendors * amount,
                grant=sign_grant(self.identity, grant),
            )
            self._record(granted)
        signed = granted.grant
        self._reply_with_head(parsed, lambda head: Allowance(signed, head), key, now, corr=corr)

    # --- the day's end -------------------------------------------------------------------------

    def allowance_timer(self) -> float | None:
        """When the next day's reservations are released."""
        return self.allowances.next_release()

    def release_allowances(self, now: float) -> None:
        """Record the release of every reservation whose day has ended."""
        for buyer, day, amount in self.allowances.releasable(now):
            self._record(AllowanceReleased(at=ms(now), buyer=buyer, day=day, amount=amount))
