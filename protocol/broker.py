"""The broker's state machine: enrollment, redemption, on-line registration, queries.

All transition rules for the broker live here. State changes only through ``apply`` of a
``BrokerEvent``, both live and when the ledger replays history, so the state after a
restart is exactly the state before it.
"""

from __future__ import annotations

import heapq
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from protocol import topics
from protocol.broker_events import (
    AccountOpened,
    AnyBrokerEvent,
    CertificateIssued,
    CertificateRevoked,
    CommitmentRegistered,
    CreditLimitExceeded,
    PaywordsRedeemed,
    RedemptionRejected,
    RegistrationRefused,
    ReservationReleased,
)
from protocol.codec import decode_certificate, decode_commitment, decode_signed
from protocol.credentials import (
    VerifiedCommitment,
    enroll_proof_data,
    issue_certificate,
    verify_commitment,
)
from protocol.crypto import (
    TAG_ENROLL_PROOF,
    Identity,
    MacKey,
    broker_token_secret,
    enrollment_token,
    token_key,
    verify_signature,
)
from protocol.endpoint import BrokerInfo, Endpoint
from protocol.envelope import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SKEW,
    Auth,
    Parsed,
    open_body,
    verify_signed,
)
from protocol.errors import (
    AuthenticationError,
    CommitmentError,
    EnrollmentError,
    LocalProtocolError,
    RedemptionError,
    RemoteProtocolError,
    UnexpectedMessageError,
)
from protocol.events import BrokerCoreEvent, MessageRejected, PublishedHeadSeen
from protocol.messages import (
    Balance,
    BalanceQuery,
    Body,
    BrokerIdentity,
    Certificate,
    Commitment,
    Enrolled,
    EnrollRequest,
    Invoice,
    InvoiceLine,
    InvoiceQuery,
    LedgerHead,
    Redeem,
    Redeemed,
    Register,
    Registered,
    RevocationList,
    Role,
    SignedHead,
)
from protocol.money_rules import (
    MAX_TOTAL,
    Payword,
    amount_for,
    check_payword,
    fits_total,
    units_between,
)

DAY = 86_400.0
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(slots=True)
class Account:
    """One buyer's or vendor's account at the broker."""

    name: str
    role: Role
    credit_limit: int
    currency: str
    token_nonce: bytes
    certificate: bytes = b""
    sign_key: bytes = b""
    agree_key: bytes = b""
    serial: int = 0


@dataclass(slots=True)
class ChainRecord:
    """What the broker knows of one commitment."""

    buyer: str
    vendor: str
    commitment: bytes
    length: int
    unit_value: int
    root: bytes
    reserved: int
    index: int = 0
    word: bytes = b""
    amount: int = 0


@dataclass(slots=True)
class BrokerPolicy:
    """Operator settings for certificates and redemption."""

    certificate_lifetime: float = 365 * DAY
    redemption_grace: float = 30 * DAY
    max_chain_length: int = 1_000_000
    revoke_over_limit: bool = True


@dataclass(slots=True)
class _Totals:
    debited: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    credited: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    reserved: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    units: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    amounts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


class BrokerCore(Endpoint[BrokerCoreEvent]):
    """Bytes in, broker events and bytes out. No I/O, no clock: ``now`` is an argument."""

    def __init__(  # noqa: PLR0913 - identity, policy, randomness, limits
        self,
        broker_id: str,
        identity: Identity,
        *,
        policy: BrokerPolicy | None = None,
        random: Callable[[int], bytes] = os.urandom,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_skew: float = DEFAULT_MAX_SKEW,
        attest_replies: bool = False,
    ) -> None:
        """``attest_replies``: hold money replies until the shell's commit signs their head.

        A shell with a ledger sets it and seals ``held_replies()`` with the signed head
        of the commit that made the replies' events durable; without it (in memory) those
        replies go out at once, without a head.
        """
        super().__init__(broker_id, identity, max_message_size=max_message_size, max_skew=max_skew)
        self.attest_replies = attest_replies
        self.info = BrokerInfo(broker_id, identity.sign_key, identity.agree_key)
        self.policy = policy or BrokerPolicy()
        self._random = random
        self._token_secret = broker_token_secret(identity)
        self.accounts: dict[str, Account] = {}
        self.chains: dict[bytes, ChainRecord] = {}
        self.revoked: dict[int, str] = {}
        self.totals = _Totals()
        self._next_serial = 1
        self._decided: list[AnyBrokerEvent] = []  # by the call in progress
        # (redemption deadline, id) of on-line commitments that reserved credit; entries
        # whose reservation is used up are dropped lazily
        self._reservation_deadlines: list[tuple[float, bytes]] = []

    # --- state: the only place it changes ----------------------------------------------------

    def apply(self, event: AnyBrokerEvent) -> None:
        """Fold one event into the state (live or replayed from the ledger)."""
        totals = self.totals
        match event:
            case AccountOpened():
                self.accounts[event.account] = Account(
                    event.account, event.role, event.credit_limit, event.currency, event.token_nonce
                )
            case CertificateIssued():
                account = self.accounts[event.account]
                certificate = _certificate_of(event.certificate)
                account.certificate = event.certificate
                account.sign_key = certificate.sign_key
                account.agree_key = certificate.agree_key
                account.serial = event.serial
                self._next_serial = max(self._next_serial, event.serial + 1)
                self._pair_keys.pop(event.account, None)
            case CertificateRevoked():
                self.revoked[event.serial] = event.account
            case CommitmentRegistered():
                commitment = _commitment_of(event.commitment)
                self.chains[event.commitment_id] = ChainRecord(
                    event.buyer,
                    event.vendor,
                    event.commitment,
                    event.length,
                    event.unit_value,
                    commitment.root,
                    event.reserved,
                    word=commitment.root,
                )
                totals.reserved[event.buyer] += event.reserved
                if event.reserved:
                    deadline = commitment.not_after / 1000 + self.policy.redemption_grace
                    heapq.heappush(self._reservation_deadlines, (deadline, event.commitment_id))
            case ReservationReleased():
                self.chains[event.commitment_id].reserved -= event.amount
                totals.reserved[event.buyer] -= event.amount
            case PaywordsRedeemed():
                record = self.chains[event.commitment_id]
                record.index = event.index
                record.word = event.payword
                record.amount += event.amount
                released = min(record.reserved, event.amount)
                record.reserved -= released
                totals.reserved[event.buyer] -= released
                totals.debited[event.buyer] += event.amount
                totals.credited[event.vendor] += event.amount
                totals.units[event.buyer, event.vendor] += event.units
                totals.amounts[event.buyer, event.vendor] += event.amount
            case _:
                pass  # refusals, alerts and billing change no protocol state

    def rebuild(self, events: Iterable[AnyBrokerEvent]) -> None:
        """Rebuild the state from the ledger's history."""
        for event in events:
            self.apply(event)

    def _record(self, event: AnyBrokerEvent) -> None:
        self.apply(event)
        self._decided.append(event)

    def _take_decided(self) -> list[AnyBrokerEvent]:
        """What the current call decided, handed back to the shell to persist."""
        out, self._decided = self._decided, []
        return out

    # --- operator actions --------------------------------------------------------------------

    def open_account(
        self, account: str, role: Role, credit_limit: int, currency: str, now: float
    ) -> AccountOpened:
        """Open an account; persist the event, then hand out ``enrollment_token(account)``."""
        if account in self.accounts:
            raise LocalProtocolError(f"account {account!r} already exists")
        if role == "broker" or account == self.account:
            raise LocalProtocolError("accounts are buyers or vendors")
        if not 0 <= credit_limit <= MAX_TOTAL:
            raise LocalProtocolError(f"the credit limit is 0..{MAX_TOTAL} minor units")
        if not ACCOUNT_NAME.fullmatch(account) or not CURRENCY.fullmatch(currency):
            raise LocalProtocolError(
                "account names are 1-64 of A-Z a-z 0-9 . _ - and currencies 3 capitals"
            )
        opened = AccountOpened(
            at=_ms(now),
            account=account,
            role=role,
            credit_limit=credit_limit,
            currency=currency,
            token_nonce=self._random(16),
        )
        self.apply(opened)
        return opened

    def enrollment_token(self, account: str) -> bytes:
        """The one-time token that lets ``account`` enroll (give it out of band)."""
        holder = self.accounts.get(account)
        if holder is None:
            raise LocalProtocolError(f"no account {account!r}")
        return enrollment_token(self._token_secret, account, holder.token_nonce)

    def revoke(self, account: str, now: float, reason: str = "operator") -> list[AnyBrokerEvent]:
        """Revoke an account's current certificate and republish the revocation list."""
        holder = self.accounts.get(account)
        if holder is None or not holder.serial:
            raise LocalProtocolError(f"{account!r} has no certificate to revoke")
        if holder.serial not in self.revoked:
            self._record(
                CertificateRevoked(
                    at=_ms(now), account=account, serial=holder.serial, reason=reason
                )
            )
        self.publish_revocations(now)
        return self._take_decided()

    def publish_identity(self, now: float) -> None:
        """Queue the retained, signed broker identity."""
        info = self.info
        self.broadcast("identity", BrokerIdentity(info.id, info.sign_key, info.agree_key), now)

    def publish_revocations(self, now: float) -> None:
        """Queue the retained, signed revocation list."""
        serials = sorted(self.revoked)
        body = RevocationList(self.account, len(serials), _ms(now), serials)
        self.broadcast("revocations", body, now)

    def publish_ledger_head(self, seq: int, head: bytes, now: float) -> None:
        """Queue the retained, signed ledger head (call only with a durable head)."""
        self.broadcast("ledger-head", LedgerHead(self.account, seq, head, _ms(now)), now)

    # --- the network -------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        """Its inbox, and its own retained ledger head (what it vouched for before a restart)."""
        return [*super().subscriptions(), topics.public(self.account, "ledger-head")]

    def on_broadcast(self, topic: str, parsed: Parsed, _now: float) -> list[BrokerCoreEvent]:
        """Its own retained ledger head, read back (the only broadcast it subscribes to)."""
        return [self._own_head(topic, parsed)]

    def on_rejected(self, rejected: MessageRejected) -> list[BrokerCoreEvent]:
        """A refusal the broker recorded (the ledger's evidence) goes with the rejection."""
        return [*self._take_decided(), rejected]

    def _own_head(self, topic: str, parsed: Parsed) -> PublishedHeadSeen:
        """Only its own ledger head arrives signed (the subscription reads nothing else)."""
        if parsed.header.sender != self.account or topic != topics.public(
            self.account, "ledger-head"
        ):
            raise AuthenticationError
        verify_signed(parsed, topic, self.identity.sign_key)
        body = open_body(parsed)
        if not isinstance(body, LedgerHead):
            raise UnexpectedMessageError("a signed broadcast that is not a ledger head")
        return PublishedHeadSeen(body.seq, body.head, body.at)

    def message_key(self, parsed: Parsed) -> MacKey:
        """The enrollment token's key, or the pairwise key of a certified account."""
        account = self.accounts.get(parsed.header.sender)
        if account is None:
            raise AuthenticationError
        if parsed.auth is Auth.TOKEN:
            token = enrollment_token(self._token_secret, account.name, account.token_nonce)
            return MacKey(token_key(token, account.name))
        if parsed.auth is Auth.PAIR and account.agree_key:
            return self.pair_key_with(account.name, account.agree_key)
        raise AuthenticationError

    def on_message(
        self, parsed: Parsed, body: Body, key: MacKey, now: float
    ) -> list[BrokerCoreEvent]:
        """Enrollment, redemption, registration and queries; refusals are answered."""
        try:
            match parsed.auth, body:
                case Auth.TOKEN, EnrollRequest():
                    self._enroll(parsed, body, key, now)
                case Auth.PAIR, Redeem():
                    self._redeem(parsed, body, key, now)
                case Auth.PAIR, Register():
                    self._register(parsed, body, key, now)
                case Auth.PAIR, BalanceQuery():
                    self._balance(parsed, key, now)
                case Auth.PAIR, InvoiceQuery():
                    self._invoice(parsed, key, now)
                case _:
                    raise UnexpectedMessageError(f"broker does not accept {parsed.header.type!r}")
        except RemoteProtocolError as error:
            self.reply_error(parsed, error.code, str(error), now, key)
            raise
        return [*self._take_decided()]

    # --- enrollment ----------------------------------------------------------------------------

    def _enroll(self, parsed: Parsed, request: EnrollRequest, key: MacKey, now: float) -> None:
        account = self.accounts[parsed.header.sender]
        if account.certificate:
            if (account.sign_key, account.agree_key) != (request.sign_key, request.agree_key):
                raise EnrollmentError("token already spent")
            self._send_enrolled(parsed, account.certificate, key, now)
            return
        proof_data = enroll_proof_data(
            account.name, self.account, request.sign_key, request.agree_key
        )
        try:
            verify_signature(request.sign_key, TAG_ENROLL_PROOF, proof_data, request.proof)
        except AuthenticationError as exc:
            raise EnrollmentError("proof of possession does not verify") from exc
        now_ms = _ms(now)
        certificate = Certificate(
            serial=self._next_serial,
            subject=account.name,
            role=account.role,
            sign_key=request.sign_key,
            agree_key=request.agree_key,
            credit_limit=account.credit_limit,
            currency=account.currency,
            not_before=now_ms,
            not_after=now_ms + int(self.policy.certificate_lifetime * 1000),
            issuer=self.account,
        )
        signed = issue_certificate(self.identity, certificate)
        self._record(
            CertificateIssued(
                at=now_ms, account=account.name, serial=certificate.serial, certificate=signed
            )
        )
        self._send_enrolled(parsed, signed, key, now)

    def _send_enrolled(self, parsed: Parsed, certificate: bytes, key: MacKey, now: float) -> None:
        header = parsed.header
        self.send(
            header.sender, Enrolled(certificate), now, auth=Auth.TOKEN, key=key, corr=header.corr
        )

    # --- commitments and redemption ------------------------------------------------------------

    def _verified(self, vendor: str, signed: bytes, now: float, grace: float) -> VerifiedCommitment:
        info = self.info
        verified = verify_commitment(signed, info.sign_key, info.id, now - grace, vendor)
        if verified.commitment.length > self.policy.max_chain_length:
            raise CommitmentError(f"chain longer than {self.policy.max_chain_length}")
        buyer = self.accounts.get(verified.certificate.subject)
        if buyer is None or buyer.role != "buyer":
            raise CommitmentError("buyer has no account here")
        seller = self.accounts[vendor]
        if seller.role != "vendor":
            raise CommitmentError(f"{vendor!r} is not a vendor account")
        if verified.commitment.currency != seller.currency:
            raise CommitmentError("commitment currency differs from the vendor's account")
        return verified

    def _ensure_registered(
        self, verified: VerifiedCommitment, reserved: int, now: float
    ) -> ChainRecord:
        record = self.chains.get(verified.id)
        if record is None:
            commitment = verified.commitment
            self._record(
                CommitmentRegistered(
                    at=_ms(now),
                    commitment_id=verified.id,
                    buyer=verified.certificate.subject,
                    vendor=commitment.vendor,
                    commitment=verified.signed,
                    length=commitment.length,
                    unit_value=commitment.unit_value,
                    reserved=reserved,
                )
            )
            record = self.chains[verified.id]
        return record

    def _redeem(self, parsed: Parsed, redeem: Redeem, key: MacKey, now: float) -> None:
        vendor = parsed.header.sender
        try:
            verified = self._verified(vendor, redeem.commitment, now, self.policy.redemption_grace)
            record = self.chains.get(verified.id)
            if record is not None and redeem.index <= record.index:
                self._send_redeemed(parsed, verified.id, record, key, now)
                return
            self._check_redeemable(verified, record, redeem)
            self._check_bounded(verified, record, redeem)
        except RemoteProtocolError as error:
            self._record(
                RedemptionRejected(
                    at=_ms(now),
                    vendor=vendor,
                    reason=str(error),
                    commitment=redeem.commitment,
                    index=redeem.index,
                    payword=redeem.payword,
                )
            )
            raise RedemptionError(str(error)) from error
        record = self._ensure_registered(verified, 0, now)
        units = redeem.index - record.index
        amount = units * record.unit_value
        self._record(
            PaywordsRedeemed(
                at=_ms(now),
                commitment_id=verified.id,
                buyer=record.buyer,
                vendor=vendor,
                commitment=verified.signed,
                from_index=record.index,
                index=redeem.index,
                payword=redeem.payword,
                units=units,
                amount=amount,
            )
        )
        self._check_credit(record.buyer, now)
        self._send_redeemed(parsed, verified.id, record, key, now)

    @staticmethod
    def _check_redeemable(
        verified: VerifiedCommitment, record: ChainRecord | None, redeem: Redeem
    ) -> None:
        commitment = verified.commitment
        index, word = (record.index, record.word) if record else (0, commitment.root)
        verdict = check_payword(redeem.payword, redeem.index, commitment.length, word, index)
        if verdict is Payword.BEYOND_LENGTH:
            raise RedemptionError(f"index {redeem.index} beyond chain length {commitment.length}")
        if verdict is Payword.OFF_CHAIN:
            raise RedemptionError(f"payword {redeem.index} does not hash to the chain")

    def _check_bounded(
        self, verified: VerifiedCommitment, record: ChainRecord | None, redeem: Redeem
    ) -> None:
        """Refuse a credit that would carry a total past ``MAX_TOTAL``.

        The unit value is the buyer's to choose (up to ``Count``), so units times value can
        exceed what a ``Redeemed``, ``Balance`` or ``Invoice`` can carry.
        """
        commitment = verified.commitment
        units = units_between(record.index if record else 0, redeem.index)
        amount = amount_for(units, commitment.unit_value)
        totals = self.totals
        buyer, vendor = verified.certificate.subject, commitment.vendor
        largest = max(totals.debited.get(buyer, 0), totals.credited.get(vendor, 0))
        if not fits_total(largest, amount):
            raise RedemptionError(f"crediting {amount} would overflow the totals")

    def _check_credit(self, buyer: str, now: float) -> None:
        account = self.accounts[buyer]
        limit = account.credit_limit
        exposure = self.totals.debited[buyer] + self.totals.reserved[buyer]
        if exposure > limit:
            if account.serial in self.revoked:
                return  # already cut off; vendors stop at the revocation list
            self._record(
                CreditLimitExceeded(at=_ms(now), buyer=buyer, exposure=exposure, limit=limit)
            )
            if self.policy.revoke_over_limit:
                self._revoke_over_limit(account, now)

    def _revoke_over_limit(self, account: Account, now: float) -> None:
        self._record(
            CertificateRevoked(
                at=_ms(now),
                account=account.name,
                serial=account.serial,
                reason="credit limit exceeded",
            )
        )
        self.publish_revocations(now)

    def _send_redeemed(
        self, parsed: Parsed, cid: bytes, record: ChainRecord, key: MacKey, now: float
    ) -> None:
        index, amount = record.index, record.amount
        self._reply_with_head(
            parsed,
            lambda head: Redeemed(cid, index, amount, head),
            key,
            now,
            corr=parsed.header.corr,
        )

    def _reply_with_head(
        self,
        parsed: Parsed,
        body: Callable[[SignedHead | None], Body],
        key: MacKey,
        now: float,
        *,
        corr: bytes,
    ) -> None:
        """A reply that moves money carries the signed head of the ledger that holds it."""
        recipient = parsed.header.sender
        if self.attest_replies:
            self.hold(recipient, body, now, auth=Auth.PAIR, key=key, corr=corr)
        else:
            self.send(recipient, body(None), now, auth=Auth.PAIR, key=key, corr=corr)

    def _register(self, parsed: Parsed, register: Register, key: MacKey, now: float) -> None:
        vendor = parsed.header.sender
        verified = self._verified(vendor, register.commitment, now, 0.0)
        commitment = verified.commitment
        buyer = verified.certificate.subject
        approved, reason = True, ""
        if verified.id not in self.chains:
            value = commitment.length * commitment.unit_value
            exposure = self.totals.debited[buyer] + self.totals.reserved[buyer] + value
            if verified.certificate.serial in self.revoked:
                approved, reason = False, "certificate revoked"
            elif exposure > self.accounts[buyer].credit_limit:
                approved, reason = False, f"credit limit: exposure would be {exposure}"
            if approved:
                self._ensure_registered(verified, value, now)
            else:
                self._record(
                    RegistrationRefused(
                        at=_ms(now),
                        commitment_id=verified.id,
                        buyer=buyer,
                        vendor=vendor,
                        reason=reason,
                    )
                )
        cid = verified.id
        self._reply_with_head(
            parsed,
            lambda head: Registered(cid, approved, reason, head),
            key,
            now,
            corr=parsed.header.corr,
        )

    # --- queries -------------------------------------------------------------------------------

    def _balance(self, parsed: Parsed, key: MacKey, now: float) -> None:
        account = self.accounts[parsed.header.sender]
        totals = self.totals
        figures = (
            account.name,
            account.currency,
            totals.debited.get(account.name, 0),
            totals.credited.get(account.name, 0),
            totals.reserved.get(account.name, 0),
        )
        self._reply_with_head(
            parsed, lambda head: Balance(*figures, head), key, now, corr=parsed.header.corr
        )

    def _invoice(self, parsed: Parsed, key: MacKey, now: float) -> None:
        account = self.accounts[parsed.header.sender]
        own = 0 if account.role == "buyer" else 1
        lines = [
            InvoiceLine(pair[1 - own], self.totals.units[pair], amount)
            for pair, amount in sorted(self.totals.amounts.items())
            if pair[own] == account.name
        ]
        body = Invoice(account.name, account.currency, lines, sum(line.amount for line in lines))
        self.send(account.name, body, now, auth=Auth.PAIR, key=key, corr=parsed.header.corr)

    # --- timers --------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When the next on-line reservation passes its redemption deadline."""
        deadlines = self._reservation_deadlines
        while deadlines and not self.chains[deadlines[0][1]].reserved:
            heapq.heappop(deadlines)  # released or redeemed in full since it was scheduled
        return deadlines[0][0] if deadlines else None

    def handle_timer(self, now: float) -> list[AnyBrokerEvent]:
        """Release reservations past their redemption deadline; forget idle replay windows."""
        while (due := self.get_timer()) is not None and due <= now:
            _, cid = heapq.heappop(self._reservation_deadlines)
            record = self.chains[cid]
            self._record(
                ReservationReleased(
                    at=_ms(now), commitment_id=cid, buyer=record.buyer, amount=record.reserved
                )
            )
        self.replay_guard.prune(now)
        return self._take_decided()


def _ms(now: float) -> int:
    return int(now * 1000)


def _certificate_of(signed: bytes) -> Certificate:
    return decode_certificate(decode_signed(signed).body)


def _commitment_of(signed: bytes) -> Commitment:
    return decode_commitment(decode_signed(signed).body)
