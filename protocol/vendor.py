"""The vendor's state machine: accept commitments, verify paywords, redeem at the broker.

All transition rules for the vendor live here. Payment verification is the hot path: one
dict lookup, one HMAC, one typed decode and ``i - j`` hashes, with receipts coalesced per
chain so a burst of payments costs one receipt.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from protocol import chain
from protocol.allowance import day_of
from protocol.codec import decode_as
from protocol.commit_throttle import CommitThrottle
from protocol.credentials import VerifiedCommitment, verify_certificate, verify_commitment
from protocol.crypto import AgentKeys, MacKey, chain_key, weak_key_reason
from protocol.endpoint import BrokerInfo
from protocol.envelope import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SKEW,
    Auth,
    Parsed,
    verify_mac,
)
from protocol.errors import (
    AuthenticationError,
    CertificateError,
    CommitmentError,
    LocalProtocolError,
    PaymentError,
    RemoteProtocolError,
    UnexpectedMessageError,
)
from protocol.events import (
    AllowanceCounted,
    CommitmentAccepted,
    LedgerHeadWitnessed,
    Outgoing,
    PaymentAccepted,
    PeerError,
    VendorEvent,
)
from protocol.messages import (
    Balance,
    Body,
    Commit,
    Deposited,
    Enrolled,
    Error,
    Offer,
    Payment,
    Receipt,
    Redeemed,
    Registered,
    Rekeyed,
)
from protocol.money_rules import amount_for
from protocol.vendor_allowance import AllowanceCounts
from protocol.vendor_chains import (
    PendingCommitment,
    VendorChain,
    VendorTerms,
    check_item,
    exposure,
)
from protocol.vendor_scrip import VendorScrip

__all__ = ["VendorChain", "VendorCore", "VendorTerms"]


class VendorCore(VendorScrip):
    """Bytes in, vendor events and bytes out. No I/O, no clock: ``now`` is an argument."""

    def __init__(  # noqa: PLR0913 - identity, credentials, trust anchor, terms
        self,
        account: str,
        identity: AgentKeys,
        broker: BrokerInfo,
        terms: VendorTerms | None = None,
        *,
        random: Callable[[int], bytes] = os.urandom,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_skew: float = DEFAULT_MAX_SKEW,
    ) -> None:
        super().__init__(
            account,
            identity,
            broker,
            terms or VendorTerms(),
            random=random,
            max_message_size=max_message_size,
            max_skew=max_skew,
        )
        self._chains_of: dict[str, dict[bytes, VendorChain]] = {}  # buyer -> its chains here
        self._receipts: dict[bytes, tuple[VendorChain, float]] = {}
        terms = self.terms
        self._throttle = CommitThrottle(terms.commit_failure_budget, terms.commit_failure_window)
        self._prices = {offered.item: offered.price for offered in terms.items}
        self.allowance_counts = AllowanceCounts()  # MiniPay: today(buyer) (SCHEMES 4.3)

    # --- outgoing ------------------------------------------------------------------------------

    def publish_offer(self, now: float) -> None:
        """Queue the retained, signed offer that buyers read before committing."""
        if not self.certificate:
            raise LocalProtocolError("enroll before publishing an offer")
        terms = self.terms
        offer = Offer(
            self.certificate,
            terms.unit_value,
            terms.currency,
            terms.max_length,
            terms.max_jump,
            terms.online,
            int((now + terms.offer_lifetime) * 1000),
            list(terms.items),
            scrip=terms.scrip,
            allowance=terms.allowance,
        )
        self.broadcast("offer", offer, now)

    def data_to_send(self) -> list[Outgoing]:
        """Queued messages, plus one coalesced receipt per chain paid since the last call."""
        for cid, (state, now) in self._receipts.items():
            amount = amount_for(state.index, state.verified.commitment.unit_value)
            body = Receipt(cid, state.index, amount)
            self.send(state.buyer, body, now, auth=Auth.CHAIN, key=state.key, ref=cid)
        self._receipts.clear()
        return super().data_to_send()

    # --- restore after restart -----------------------------------------------------------------

    def restore_chain(  # noqa: PLR0913 - one argument per stored column
        self,
        commitment: bytes,
        index: int,
        word: bytes,
        redeemed: int,
        now: float,
        receipt_seq: int = 0,
    ) -> VendorChain:
        """Reinstate a chain from the vendor's store (signatures re-checked, expiry not).

        An expired chain still holds paywords to redeem, so it is restored all the same;
        it simply accepts no further payments.
        """
        broker = self.broker
        verified = verify_commitment(commitment, self.broker_keys, broker.id, None, self.account)
        key = self._chain_key(verified)
        state = self._install(verified, key, index, word, redeemed, now + self.terms.redeem_retry)
        state.receipt_seq = receipt_seq
        return state

    def _chain_key(self, verified: VerifiedCommitment) -> MacKey:
        certificate = verified.certificate
        return MacKey(
            chain_key(
                self.identity, certificate.agree_key, certificate.subject, self.account, verified.id
            )
        )

    def _install(  # noqa: PLR0913 - one argument per chain field
        self,
        verified: VerifiedCommitment,
        key: MacKey,
        index: int,
        word: bytes,
        redeemed: int,
        redeem_due: float,
    ) -> VendorChain:
        certificate = verified.certificate
        state = VendorChain(
            verified,
            key,
            certificate.subject,
            certificate.serial,
            index,
            word,
            redeemed,
            redeem_due,
        )
        self.chains[verified.id] = state
        self._chains_of.setdefault(state.buyer, {})[verified.id] = state
        return state

    # --- the network ---------------------------------------------------------------------------

    def message_key(self, parsed: Parsed) -> MacKey | None:
        """A chain's key, a pending commitment's, or the broker's; ``None``: a first commit."""
        if parsed.auth is not Auth.CHAIN:
            return self.broker_message_key(parsed)
        header = parsed.header
        state = self.chains.get(header.ref)
        if state is not None:
            if header.sender != state.buyer:
                raise AuthenticationError
            return state.key
        if header.type == "commit":
            return None
        pending = self._pending.get(header.ref)
        if pending is not None and header.sender == pending.buyer:
            return pending.key
        raise AuthenticationError

    def on_message(self, parsed: Parsed, body: Body, key: MacKey, now: float) -> list[VendorEvent]:
        """Payments and commits from buyers; enrollment, receipts and answers from the broker."""
        if parsed.auth is not Auth.CHAIN:
            if parsed.auth is Auth.SCRIP:
                return self.on_scrip(parsed, body, key, now)
            return self._from_broker(parsed, body, now)
        state = self.chains.get(parsed.header.ref)  # the hot path: one call per payment
        try:
            match body:
                case Payment() if state is not None:
                    return self._pay(state, body, now)
                case Commit():
                    if state is not None:
                        self._queue_receipt(state, now)
                    return []
                case _:
                    raise UnexpectedMessageError(
                        f"vendor does not accept {parsed.header.type!r} here"
                    )
        except RemoteProtocolError as error:
            self.reply_error(parsed, error.code, str(error), now, key)
            raise

    def on_broker_broadcast(self, topic: str, parsed: Parsed, now: float) -> list[VendorEvent]:
        """Revocations and ledger heads; the broker's identity means it (re)started."""
        return self._from_broker_broadcast(topic, parsed, now)

    def on_first_commit(self, topic: str, parsed: Parsed, now: float) -> list[VendorEvent]:
        """A commit on a chain this vendor does not hold yet."""
        return self._first_commit(topic, parsed, now)

    def _from_broker_broadcast(self, topic: str, parsed: Parsed, now: float) -> list[VendorEvent]:
        events: list[VendorEvent] = list(self.broker_broadcast(topic, parsed))
        for event in list(events):
            if isinstance(event, LedgerHeadWitnessed) and event.regressed:
                events.extend(self._broker_lost(event.seq, now))
        if parsed.header.type == "identity":
            self.reconcile(now)  # the broker (re)started, or this vendor (re)connected
        return events

    def _first_commit(self, topic: str, parsed: Parsed, now: float) -> list[VendorEvent]:
        """The one message whose MAC key comes from its own body.

        The commitment's signatures are verified (and cached) before the key is derived
        from it, so failures are counted per sender and a sender over budget is refused
        before any signature check.
        """
        header = parsed.header
        self._throttle.check(header.sender, now)
        try:
            body = decode_as(Commit, header.body)
            verified = self._verify_commit(body, now)
            if verified.id != header.ref or verified.certificate.subject != header.sender:
                raise AuthenticationError
            key = self._chain_key(verified)
            verify_mac(parsed, topic, key)
        except RemoteProtocolError:
            self._throttle.failed(header.sender, now)
            raise
        self.replay_guard.check(parsed, now)
        return self._commit(parsed, verified, key, now, body.allowance)

    def exposure(self, buyer: str, now: float, *, besides: bytes = b"") -> int:
        """All this vendor could claim from ``buyer`` (``vendor_chains.exposure``).

        Chains waiting for the broker's registration count in full: taking small chains
        off-line while a large one waits (``online_above``, MiniPay) must not let the two
        together pass the buyer's limit once the large one is approved. ``besides`` is a
        commitment not to count (the one being checked, when it is sent again).
        """
        held = exposure(self._chains_of.get(buyer, {}).values(), now, self.revoked)
        now_ms = int(now * 1000)
        waiting = (
            pending.verified.commitment
            for cid, pending in self._pending.items()
            if cid != besides and pending.verified.certificate.subject == buyer
        )
        return held + sum(
            amount_for(c.length, c.unit_value) for c in waiting if now_ms <= c.not_after
        )

    def _verify_commit(self, commit: Commit, now: float) -> VerifiedCommitment:
        broker = self.broker
        verified = verify_commitment(
            commit.commitment, self.broker_keys, broker.id, now, self.account, self.revoked
        )
        verify_certificate(
            verified.commitment.buyer_certificate,
            self.broker_keys,
            broker.id,
            now,
            role="buyer",
            revoked=self.revoked,
        )
        certificate = verified.certificate
        if (reason := weak_key_reason(certificate.sign_key, certificate.agree_key)) is not None:
            # The broker no longer certifies such keys; one certified before it refused them
            # lets anyone sign for the buyer, which the buyer could then disown.
            raise CertificateError(f"buyer certificate carries a weak key: {reason}")
        return verified

    def _commit(
        self, parsed: Parsed, verified: VerifiedCommitment, key: MacKey, now: float, grant: bytes
    ) -> list[VendorEvent]:
        commitment = verified.commitment
        terms = self.terms
        try:
            if commitment.unit_value != terms.unit_value or commitment.currency != terms.currency:
                raise CommitmentError("unit value or currency differs from the offer")
            if commitment.length > terms.max_length:
                raise CommitmentError(f"chain longer than {terms.max_length}")
            exposure = self.exposure(verified.certificate.subject, now, besides=verified.id)
            value = amount_for(commitment.length, commitment.unit_value)
            limit = verified.certificate.credit_limit
            if exposure + value > limit:
                raise CommitmentError(
                    f"credit limit {limit}: {exposure} already paid or payable here,"
                    f" a chain worth {value} more would pass it"
                )
        except CommitmentError as error:
            self.reply_error(parsed, error.code, str(error), now, key)
            raise
        if terms.allowance and verified.id not in self._pending:
            # MiniPay (docs/SCHEMES.md 4.3): off-line within the day's grant, else register
            counted = self.allowance_counts.decide(
                grant, verified, now, self.broker_keys, self.broker.id
            )
            if counted:
                return [*self._accept(verified, key, now), self._counted(verified, now, counted)]
        if terms.allowance or self.registers(value):
            if verified.id not in self._pending:
                pending = PendingCommitment(verified, key, parsed.header.sender, parsed.header.corr)
                self._pending[verified.id] = pending
                self._send_register(pending, now)
            return []
        return self._accept(verified, key, now)

    def registers(self, value: int) -> bool:
        """Whether a chain worth ``value`` waits for the broker: all on-line, or above a value."""
        terms = self.terms
        return terms.online and value > terms.online_above

    def _accept(self, verified: VerifiedCommitment, key: MacKey, now: float) -> list[VendorEvent]:
        commitment = verified.commitment
        due = now + self.terms.redeem_interval
        state = self._install(verified, key, 0, commitment.root, 0, due)
        self._queue_receipt(state, now)
        return [CommitmentAccepted(verified.id, state.buyer, verified.signed, commitment.root)]

    def _pay(self, state: VendorChain, payment: Payment, now: float) -> list[VendorEvent]:
        # Paywords up to what the broker already credited are never served again, even
        # when this store (restored from a backup) holds fewer.
        verified, held, word = state.verified, state.index, payment.payword
        commitment = verified.commitment
        index, last = payment.index, max(held, state.redeemed)  # ``state.paid``
        if payment.commitment_id != verified.id:
            raise PaymentError("payment names another commitment than its envelope")
        if index == held and word == state.word:
            self._receipts[verified.id] = (state, now)  # ``_queue_receipt``, inlined
            return []
        if index <= last:
            raise PaymentError(f"index {index} not above the last accepted {last}")
        if index > commitment.length:
            raise PaymentError(f"index {index} beyond chain length {commitment.length}")
        if index - last > self.terms.max_jump:
            raise PaymentError(f"jump of {index - last} exceeds the maximum {self.terms.max_jump}")
        if state.buyer_serial in self.revoked:
            raise PaymentError("buyer certificate revoked")
        if int(now * 1000) > commitment.not_after:
            raise PaymentError("commitment expired")
        if not chain.extends(word, index, state.word, held):
            raise PaymentError(f"payword {index} does not hash to payword {held}")
        units = index - last
        unit_value = commitment.unit_value
        item = payment.item
        if item:
            check_item(self._prices, item, units, unit_value)
        state.index, state.word = index, word
        self._receipts[verified.id] = (state, now)
        return [
            PaymentAccepted(
                verified.id, state.buyer, index, word, units, amount_for(units, unit_value), item
            )
        ]

    def _queue_receipt(self, state: VendorChain, now: float) -> None:
        self._receipts[state.verified.id] = (state, now)

    def _from_broker(self, parsed: Parsed, body: Body, now: float) -> list[VendorEvent]:  # noqa: PLR0911 - one per message
        match body:
            case Enrolled():
                return [self.enrolled(parsed, body, now)]
            case Rekeyed():
                return [*self.rekeyed(parsed, body, now)]
            case Redeemed():
                return self._redeemed(parsed, body, now)
            case Registered():
                received = self.head_from_reply(parsed, body.ledger, body.commitment_id)
                return [*self._heard(received, now), *self._registered(body, now)]
            case Balance():
                received = self.head_from_reply(parsed, body.ledger, b"")
                return [*self._heard(received, now), *self._reconcile(body, now)]
            case Deposited():
                return self.scrip_deposited(parsed, body, now)
            case Error():
                self.rekey_refused(parsed.header.corr)
                self._redemption_refused(parsed.header.corr, now)
                refused = self.scrip_refused(parsed.header.corr, body, now)
                error = PeerError(parsed.header.sender, body.code, body.detail, parsed.header.corr)
                return [error, *refused]
            case _:
                raise UnexpectedMessageError(f"vendor does not accept {parsed.header.type!r}")

    def _registered(self, registered: Registered, now: float) -> list[VendorEvent]:
        pending = self._pending.pop(registered.commitment_id, None)
        if pending is None:
            return []
        if not registered.approved:
            self._refuse_pending(pending, f"refused by the broker: {registered.reason}", now)
            return []
        accepted = self._accept(pending.verified, pending.key, now)
        if self.terms.allowance:
            accepted.append(self._counted(pending.verified, now, 0))
        return accepted

    def _counted(self, verified: VerifiedCommitment, now: float, amount: int) -> AllowanceCounted:
        """What a chain counted against the buyer's grant today (0: registered on-line)."""
        return AllowanceCounted(verified.id, verified.certificate.subject, day_of(now), amount)

    def restore_allowance(self, buyer: str, day: int, amount: int) -> None:
        """Count a stored chain's off-line acceptance again (``AllowanceCounted``)."""
        self.allowance_counts.restore(buyer, day, amount)

    def get_timer(self) -> float | None:
        """When the next redemption (or retry) falls due."""
        due = [s.redeem_due for s in self.chains.values() if s.owes_redemption]
        due.extend(p.retry_due for p in self._pending.values())
        enrolling = self.enrollment_timer()
        if enrolling is not None:
            due.append(enrolling)
        scrip = self.scrip_timer()
        if scrip is not None:
            due.append(scrip)
        return min(due) if due else None

    def handle_timer(self, now: float) -> list[VendorEvent]:
        """Send due redemptions and deposits; unanswered ones are retried with backoff."""
        self.resend_enrollment(now)
        for state in self.chains.values():
            if state.owes_redemption and state.redeem_due <= now:
                self._send_redeem(state, now)
        for pending in self._pending.values():
            if pending.retry_due <= now:
                self._send_register(pending, now)
        events = self.scrip_due(now)
        self.replay_guard.prune(now)
        self._throttle.forget(now)
        return events
