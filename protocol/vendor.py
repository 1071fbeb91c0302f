"""The vendor's state machine: accept commitments, verify paywords, redeem at the broker.

All transition rules for the vendor live here. Payment verification is the hot path: one
dict lookup, one HMAC, one typed decode and ``i - j`` hashes, with receipts coalesced per
chain so a burst of payments costs one receipt.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol import chain
from protocol.codec import decode_as
from protocol.credentials import VerifiedCommitment, verify_certificate, verify_commitment
from protocol.crypto import Identity, MacKey, chain_key
from protocol.endpoint import AgentEndpoint, BrokerInfo
from protocol.envelope import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SKEW,
    Auth,
    Parsed,
    verify_mac,
)
from protocol.errors import (
    AuthenticationError,
    CommitmentError,
    LocalProtocolError,
    PaymentError,
    RemoteProtocolError,
    ThrottledError,
    UnexpectedMessageError,
)
from protocol.events import (
    CommitmentAccepted,
    HeadReceived,
    LedgerHeadWitnessed,
    Outgoing,
    PaymentAccepted,
    PeerError,
    RedemptionConfirmed,
    StateBehind,
    VendorEvent,
)
from protocol.messages import (
    Balance,
    BalanceQuery,
    Body,
    Commit,
    Enrolled,
    Error,
    Offer,
    OfferItem,
    Payment,
    Receipt,
    Redeem,
    Redeemed,
    Register,
    Registered,
)

MAX_THROTTLED_SENDERS = 10_000
"""Senders whose failed commitments are counted at once (bounded memory)."""


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
    in_flight: int = 0
    receipt_seq: int = 0  # the ledger head the broker's latest receipt for it carried
    reconfirm: bool = False  # ask the broker again even though nothing new is held

    @property
    def paid(self) -> int:
        """The index payments must exceed: held here, or already credited by the broker."""
        return max(self.index, self.redeemed)


@dataclass(slots=True)
class _Pending:
    """A commitment waiting for the broker's on-line verdict."""

    verified: VerifiedCommitment
    key: MacKey
    buyer: str
    corr: bytes
    retry_due: float = 0.0
    backoff: float = 0.0


class VendorCore(AgentEndpoint[VendorEvent]):
    """Bytes in, vendor events and bytes out. No I/O, no clock: ``now`` is an argument."""

    role = "vendor"

    def __init__(  # noqa: PLR0913 - identity, credentials, trust anchor, terms
        self,
        account: str,
        identity: Identity,
        broker: BrokerInfo,
        terms: VendorTerms | None = None,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_skew: float = DEFAULT_MAX_SKEW,
    ) -> None:
        super().__init__(
            account, identity, broker, max_message_size=max_message_size, max_skew=max_skew
        )
        self.terms = terms or VendorTerms()
        self.chains: dict[bytes, VendorChain] = {}
        self._chains_of: dict[str, dict[bytes, VendorChain]] = {}  # buyer -> its chains here
        self._pending: dict[bytes, _Pending] = {}
        self._receipts: dict[bytes, tuple[VendorChain, float]] = {}
        # sender -> (failed commit checks, window start): caps the Ed25519 work a peer can cause
        self._commit_failures: dict[str, tuple[int, float]] = {}

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
        )
        self.broadcast("offer", offer, now)

    def data_to_send(self) -> list[Outgoing]:
        """Queued messages, plus one coalesced receipt per chain paid since the last call."""
        for cid, (state, now) in self._receipts.items():
            body = Receipt(cid, state.index, state.index * state.verified.commitment.unit_value)
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
        verified = verify_commitment(commitment, broker.sign_key, broker.id, None, self.account)
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
        if parsed.auth is Auth.CHAIN:
            return self._from_buyer(parsed, body, key, now)
        return self._from_broker(parsed, body, now)

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

    def _from_buyer(self, parsed: Parsed, body: Body, key: MacKey, now: float) -> list[VendorEvent]:
        header = parsed.header
        state = self.chains.get(header.ref)
        try:
            match body:
                case Payment() if state is not None:
                    return self._pay(state, body, now)
                case Commit():
                    if state is not None:
                        self._queue_receipt(state, now)
                    return []
                case _:
                    raise UnexpectedMessageError(f"vendor does not accept {header.type!r} here")
        except RemoteProtocolError as error:
            self.reply_error(parsed, error.code, str(error), now, key)
            raise

    def _first_commit(self, topic: str, parsed: Parsed, now: float) -> list[VendorEvent]:
        """The one message whose MAC key comes from its own body.

        The commitment's signatures are verified (and cached) before the key is derived
        from it, so failures are counted per sender and a sender over budget is refused
        before any signature check.
        """
        header = parsed.header
        self._check_commit_budget(header.sender, now)
        try:
            body = decode_as(Commit, header.body)
            verified = self._verify_commit(body, now)
            if verified.id != header.ref or verified.certificate.subject != header.sender:
                raise AuthenticationError
            key = self._chain_key(verified)
            verify_mac(parsed, topic, key)
        except RemoteProtocolError:
            self._commit_failed(header.sender, now)
            raise
        self.replay_guard.check(parsed, now)
        return self._commit(parsed, verified, key, now)

    def _check_commit_budget(self, sender: str, now: float) -> None:
        """Refuse, before any signature check, a sender whose recent commits kept failing."""
        failures, since = self._commit_failures.get(sender, (0, now))
        if now - since > self.terms.commit_failure_window:
            del self._commit_failures[sender]
        elif failures >= self.terms.commit_failure_budget:
            raise ThrottledError(f"{failures} failed commitments in the last minute")

    def _commit_failed(self, sender: str, now: float) -> None:
        failures, since = self._commit_failures.get(sender, (0, now))
        if not failures and len(self._commit_failures) >= MAX_THROTTLED_SENDERS:
            self._forget_commit_failures(now)
            if len(self._commit_failures) >= MAX_THROTTLED_SENDERS:
                return  # bounded memory first; the ACL already binds senders to MQTT users
        self._commit_failures[sender] = (failures + 1, since)

    def _forget_commit_failures(self, now: float) -> None:
        window = self.terms.commit_failure_window
        for sender in [s for s, (_, t) in self._commit_failures.items() if now - t > window]:
            del self._commit_failures[sender]

    def exposure(self, buyer: str, now: float) -> int:
        """What this vendor may still claim for ``buyer``.

        That is the paywords held but not yet redeemed, plus the unspent rest of every chain
        that can still be paid; a new commitment must fit under the certificate's limit.
        """
        now_ms = int(now * 1000)
        total = 0
        for state in self._chains_of.get(buyer, {}).values():
            commitment = state.verified.commitment
            reach = commitment.length if now_ms <= commitment.not_after else state.index
            total += max(reach - state.redeemed, 0) * commitment.unit_value
        return total

    def _verify_commit(self, commit: Commit, now: float) -> VerifiedCommitment:
        broker = self.broker
        verified = verify_commitment(
            commit.commitment, broker.sign_key, broker.id, now, self.account, self.revoked
        )
        verify_certificate(
            verified.commitment.buyer_certificate,
            broker.sign_key,
            broker.id,
            now,
            role="buyer",
            revoked=self.revoked,
        )
        return verified

    def _commit(
        self, parsed: Parsed, verified: VerifiedCommitment, key: MacKey, now: float
    ) -> list[VendorEvent]:
        commitment = verified.commitment
        terms = self.terms
        try:
            if commitment.unit_value != terms.unit_value or commitment.currency != terms.currency:
                raise CommitmentError("unit value or currency differs from the offer")
            if commitment.length > terms.max_length:
                raise CommitmentError(f"chain longer than {terms.max_length}")
            exposure = self.exposure(verified.certificate.subject, now)
            value = commitment.length * commitment.unit_value
            if exposure + value > verified.certificate.credit_limit:
                raise CommitmentError(
                    f"credit limit: {exposure} open here plus {value} exceeds "
                    f"{verified.certificate.credit_limit}"
                )
        except CommitmentError as error:
            self.reply_error(parsed, error.code, str(error), now, key)
            raise
        if terms.online:
            if verified.id not in self._pending:
                pending = _Pending(verified, key, parsed.header.sender, parsed.header.corr)
                self._pending[verified.id] = pending
                self._send_register(pending, now)
            return []
        return self._accept(verified, key, now)

    def _accept(self, verified: VerifiedCommitment, key: MacKey, now: float) -> list[VendorEvent]:
        commitment = verified.commitment
        due = now + self.terms.redeem_interval
        state = self._install(verified, key, 0, commitment.root, 0, due)
        self._queue_receipt(state, now)
        return [CommitmentAccepted(verified.id, state.buyer, verified.signed, commitment.root)]

    def _pay(self, state: VendorChain, payment: Payment, now: float) -> list[VendorEvent]:
        # Paywords up to what the broker already credited are never served again, even
        # when this store (restored from a backup) holds fewer.
        index, last = payment.index, state.paid
        if payment.commitment_id != state.verified.id:
            raise PaymentError("payment names another commitment than its envelope")
        if index == state.index and payment.payword == state.word:
            self._queue_receipt(state, now)
            return []
        if index <= last:
            raise PaymentError(f"index {index} not above the last accepted {last}")
        if index > state.verified.commitment.length:
            raise PaymentError(
                f"index {index} beyond chain length {state.verified.commitment.length}"
            )
        if index - last > self.terms.max_jump:
            raise PaymentError(f"jump of {index - last} exceeds the maximum {self.terms.max_jump}")
        if state.buyer_serial in self.revoked:
            raise PaymentError("buyer certificate revoked")
        if int(now * 1000) > state.verified.commitment.not_after:
            raise PaymentError("commitment expired")
        if not chain.extends(payment.payword, index, state.word, state.index):
            raise PaymentError(f"payword {index} does not hash to payword {state.index}")
        units = index - last
        state.index, state.word = index, payment.payword
        self._queue_receipt(state, now)
        unit_value = state.verified.commitment.unit_value
        return [
            PaymentAccepted(
                state.verified.id,
                state.buyer,
                index,
                payment.payword,
                units,
                units * unit_value,
                payment.item,
            )
        ]

    def _queue_receipt(self, state: VendorChain, now: float) -> None:
        self._receipts[state.verified.id] = (state, now)

    def _from_broker(self, parsed: Parsed, body: Body, now: float) -> list[VendorEvent]:
        match body:
            case Enrolled():
                return [self.enrolled(parsed, body, now)]
            case Redeemed():
                return self._redeemed(parsed, body, now)
            case Registered():
                received = self.head_from_reply(parsed, body.ledger, body.commitment_id)
                return [*self._heard(received, now), *self._registered(body, now)]
            case Balance():
                received = self.head_from_reply(parsed, body.ledger, b"")
                return [*self._heard(received, now), *self._reconcile(body, now)]
            case Error():
                self._redemption_refused(parsed.header.corr, now)
                return [PeerError(parsed.header.sender, body.code, body.detail, parsed.header.corr)]
            case _:
                raise UnexpectedMessageError(f"vendor does not accept {parsed.header.type!r}")

    def _send_register(self, pending: _Pending, now: float) -> None:
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

    def _registered(self, registered: Registered, now: float) -> list[VendorEvent]:
        pending = self._pending.pop(registered.commitment_id, None)
        if pending is None:
            return []
        if not registered.approved:
            self._refuse_pending(pending, f"refused by the broker: {registered.reason}", now)
            return []
        return self._accept(pending.verified, pending.key, now)

    def _refuse_pending(self, pending: _Pending, detail: str, now: float) -> None:
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
        state.reconfirm = False
        state.in_flight = 0
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
        state.reconfirm = True
        state.redeem_backoff = 0.0
        self._send_redeem(state, now)

    def _reconcile(self, balance: Balance, now: float) -> list[VendorEvent]:
        """Compare the broker's total credit with this store's; either may be the older one."""
        held = confirmed = 0
        for state in self.chains.values():
            unit = state.verified.commitment.unit_value
            held += state.paid * unit
            confirmed += state.redeemed * unit
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
                state.in_flight = 0
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
        state.in_flight = state.index
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

    def get_timer(self) -> float | None:
        """When the next redemption (or retry) falls due."""
        due = [s.redeem_due for s in self.chains.values() if s.index > s.redeemed or s.reconfirm]
        due.extend(p.retry_due for p in self._pending.values())
        return min(due) if due else None

    def handle_timer(self, now: float) -> list[VendorEvent]:
        """Send due redemptions; unanswered ones are retried with exponential backoff."""
        for state in self.chains.values():
            if (state.index > state.redeemed or state.reconfirm) and state.redeem_due <= now:
                self._send_redeem(state, now)
        for pending in self._pending.values():
            if pending.retry_due <= now:
                self._send_register(pending, now)
        self.replay_guard.prune(now)
        self._forget_commit_failures(now)
        return []

    @property
    def unredeemed_amount(self) -> int:
        """Value held in paywords the broker has not yet credited."""
        return sum(
            max(s.index - s.redeemed, 0) * s.verified.commitment.unit_value
            for s in self.chains.values()
        )
