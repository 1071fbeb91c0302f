"""The vendor's side with the broker: on-line registration, redemption, reconciliation.

Paywords are redeemed on a timer and retried with backoff until the broker answers; the
broker's signed receipts are kept, and a receipt or balance that shows the broker's
ledger (or this vendor's store) went back makes the vendor re-send its evidence.
"""

from __future__ import annotations

from protocol.agent_endpoint import AgentEndpoint
from protocol.crypto import AgentKeys
from protocol.endpoint import BrokerInfo
from protocol.envelope import Auth, Parsed
from protocol.events import (
    HeadReceived,
    RedemptionConfirmed,
    StateBehind,
    VendorEvent,
)
from protocol.messages import Balance, BalanceQuery, Error, Redeem, Redeemed, Register
from protocol.money_rules import amount_for
from protocol.vendor_chains import ChainState, PendingCommitment, VendorChain, VendorTerms


class VendorRedemption(AgentEndpoint[VendorEvent]):
    """What a vendor does with the broker once it holds chains; ``VendorCore`` adds buyers."""

    role = "vendor"

    def __init__(  # noqa: PLR0913 - identity, trust anchor, terms, limits
        self,
        account: str,
        identity: AgentKeys,
        broker: BrokerInfo,
        terms: VendorTerms,
        *,
        max_message_size: int,
        max_skew: float,
    ) -> None:
        super().__init__(
            account, identity, broker, max_message_size=max_message_size, max_skew=max_skew
        )
        self.terms = terms
        self.chains: dict[bytes, VendorChain] = {}
        self._pending: dict[bytes, PendingCommitment] = {}

    def _send_register(self, pending: PendingCommitment, now: float) -> None:
        """Ask the broker (again); unanswered requests are resent with backoff."""
        terms = self.terms
        pending.backoff = min(max(pending.backoff * 2, terms.redeem_retry), terms.redeem_retry_max)
        pending.retry_due = now + pending.backoff
        self.send(
            self.broker.id,
            Register(pending.verified.signed),
            now,
            auth=Auth.PAIR,
            key=self.broker_key,
            corr=pending.verified.id[:16],
        )

    def _refuse_pending(self, pending: PendingCommitment, detail: str, now: float) -> None:
        self.send(
            pending.buyer,
            Error("commitment", detail),
            now,
            auth=Auth.CHAIN,
            key=pending.key,
            ref=pending.verified.id,
            corr=pending.corr,
        )

    # --- redemption ----------------------------------------------------------------------------

    def _redeemed(self, parsed: Parsed, redeemed: Redeemed, now: float) -> list[VendorEvent]:
        cid = redeemed.commitment_id
        received = self.head_from_reply(parsed, redeemed.ledger, cid)
        events = self._heard(received, now)
        state = self.chains.get(cid)
        if state is None:
            return events
        if received is not None and received.verdict in ("new", "seen"):
            state.receipt_seq = received.signed.seq
        state.set_state(ChainState.ACTIVE)
        if redeemed.index <= state.redeemed:
            return events
        if redeemed.index > state.index:
            # The broker credited paywords this store does not hold: the store is older
            # than the broker's record. Adopting the broker's index means those paywords
            # are never served a second time.
            events.append(
                StateBehind(
                    "ours",
                    f"the broker credited commitment {cid.hex()[:16]} up to index"
                    f" {redeemed.index} but this store holds only {state.index}: the store is"
                    " older than the broker's record (restored from a backup?); payments up"
                    f" to {redeemed.index} will not be accepted again",
                )
            )
        state.redeemed = redeemed.index
        state.redeem_backoff = 0.0
        state.redeem_due = now + self.terms.redeem_interval
        events.append(RedemptionConfirmed(cid, redeemed.index, redeemed.amount))
        return events

    def _heard(self, received: HeadReceived | None, now: float) -> list[VendorEvent]:
        """Keep a signed head; if it shows the broker's ledger went back, re-send evidence."""
        if received is None:
            return []
        events: list[VendorEvent] = [received]
        if received.verdict == "regression":
            events.extend(self._broker_lost(received.signed.seq, now))
        return events

    def _broker_lost(self, seq: int, now: float) -> list[VendorEvent]:
        """The broker's ledger is back at ``seq``: re-send every redemption it confirmed later."""
        lost = [s for s in self.chains.values() if s.redeemed and s.receipt_seq > seq]
        for state in lost:
            self._reconfirm(state, now)
        if not lost:
            return []
        return [
            StateBehind(
                "broker's",
                f"the broker's ledger went back to seq {seq} below receipts this vendor holds;"
                f" re-sending {len(lost)} redemptions with their paywords",
            )
        ]

    def _reconfirm(self, state: VendorChain, now: float) -> None:
        state.set_state(ChainState.RECONFIRMING)
        state.redeem_backoff = 0.0
        self._send_redeem(state, now)

    def _reconcile(self, balance: Balance, now: float) -> list[VendorEvent]:
        """Compare the broker's total credit with this store's; either may be the older one."""
        held = confirmed = 0
        for state in self.chains.values():
            unit = state.verified.commitment.unit_value
            held += amount_for(state.paid, unit)
            confirmed += amount_for(state.redeemed, unit)
        if balance.credited > held:
            for state in self.chains.values():
                self._reconfirm(state, now)  # each answer tells what the broker holds
            return [
                StateBehind(
                    "ours",
                    f"the broker credited this vendor {balance.credited} but its store holds"
                    f" paywords worth {held}: the store is older than the broker's record"
                    " (restored from a backup?); asking the broker chain by chain",
                )
            ]
        if balance.credited < confirmed:
            lost = [s for s in self.chains.values() if s.redeemed]
            for state in lost:
                self._reconfirm(state, now)
            return [
                StateBehind(
                    "broker's",
                    f"the broker credited this vendor {balance.credited} but this store holds"
                    f" its receipts for {confirmed}: the broker's ledger lost redemptions;"
                    f" re-sending {len(lost)} with their paywords",
                )
            ]
        return []

    def reconcile(self, now: float) -> None:
        """Ask the broker for this vendor's balance, to compare with the store."""
        if self.certificate:
            self.send(self.broker.id, BalanceQuery(), now, auth=Auth.PAIR, key=self.broker_key)

    def _redemption_refused(self, corr: bytes, now: float) -> None:
        for cid, pending in list(self._pending.items()):
            if cid[:16] == corr:  # the broker refused to even consider the commitment
                del self._pending[cid]
                self._refuse_pending(pending, "refused by the broker", now)
        for cid, state in self.chains.items():
            if cid[:16] == corr:
                if state.state is ChainState.REDEEMING:
                    state.set_state(ChainState.ACTIVE)
                state.redeem_due = now + self.terms.redeem_retry_max

    def redeem_all(self, now: float) -> int:
        """Queue a redemption for every chain holding unredeemed paywords (e.g. at shutdown)."""
        count = 0
        for state in self.chains.values():
            if state.index > state.redeemed:
                self._send_redeem(state, now)
                count += 1
        return count

    def _send_redeem(self, state: VendorChain, now: float) -> None:
        terms = self.terms
        if state.state is ChainState.ACTIVE:
            state.set_state(ChainState.REDEEMING)
        state.redeem_backoff = min(
            max(state.redeem_backoff * 2, terms.redeem_retry), terms.redeem_retry_max
        )
        state.redeem_due = now + state.redeem_backoff
        body = Redeem(state.verified.signed, state.index, state.word)
        self.send(
            self.broker.id,
            body,
            now,
            auth=Auth.PAIR,
            key=self.broker_key,
            corr=state.verified.id[:16],
        )

    @property
    def unredeemed_amount(self) -> int:
        """Value held in paywords the broker has not yet credited."""
        return sum(
            amount_for(max(s.index - s.redeemed, 0), s.verified.commitment.unit_value)
            for s in self.chains.values()
        )
