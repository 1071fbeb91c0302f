"""The broker's state machine: enrollment, redemption, on-line registration, queries.

All transition rules for the broker live here. State changes only through ``apply`` of a
``BrokerEvent``, both live and when the ledger replays history, so the state after a
restart is exactly the state before it.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Callable

from protocol import topics
from protocol.broker_allowance import BrokerAllowance
from protocol.broker_books import (
    OVER_LIMIT_RESERVE,
    BrokerPolicy,
    ms,
)
from protocol.broker_events import (
    AccountOpened,
    AnyBrokerEvent,
    BrokerKeyRotated,
    CertificateIssued,
    CertificateRevoked,
    ReservationReleased,
)
from protocol.broker_scrip import BrokerScrip
from protocol.codec import decode_as, encode
from protocol.credentials import (
    enroll_proof_data,
)
from protocol.crypto import (
    TAG_ENROLL_PROOF,
    AgentKeys,
    MacKey,
    broker_token_secret,
    enrollment_token,
    token_key,
    verify_signature,
    weak_key_reason,
)
from protocol.endpoint import BrokerInfo
from protocol.envelope import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SKEW,
    Auth,
    Parsed,
    verify_signed,
)
from protocol.errors import (
    AuthenticationError,
    EnrollmentError,
    LocalProtocolError,
    RemoteProtocolError,
    UnexpectedMessageError,
    WeakKeyError,
)
from protocol.events import BrokerCoreEvent, MessageRejected, PublishedHeadSeen
from protocol.key_rotation import sign_rotation
from protocol.messages import (
    MAX_REVOKED,
    MAX_ROTATIONS,
    AllowanceQuery,
    Balance,
    BalanceQuery,
    Body,
    BrokerIdentity,
    Deposit,
    Enrolled,
    EnrollRequest,
    Invoice,
    InvoiceLine,
    InvoiceQuery,
    KeyRotation,
    LedgerHead,
    MintRequest,
    Redeem,
    Register,
    RekeyRequest,
    Role,
)
from protocol.money_rules import (
    MAX_TOTAL,
)
from protocol.split_keys import SplitKeys

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
CURRENCY = re.compile(r"[A-Z]{3}")

__all__ = ["BrokerCore", "BrokerPolicy"]


class BrokerCore(BrokerAllowance, BrokerScrip):
    """Bytes in, broker events and bytes out. No I/O, no clock: ``now`` is an argument."""

    def __init__(  # noqa: PLR0913 - identity, policy, randomness, limits
        self,
        broker_id: str,
        identity: AgentKeys,
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
        super().__init__(
            broker_id,
            identity,
            policy or BrokerPolicy(),
            max_message_size=max_message_size,
            max_skew=max_skew,
            attest_replies=attest_replies,
        )
        self._random = random
        self._token_secret = broker_token_secret(identity)

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
            at=ms(now),
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
            self.check_revocation_room(now)
            self._record(
                CertificateRevoked(at=ms(now), account=account, serial=holder.serial, reason=reason)
            )
        self.publish_revocations(now)
        return self._take_decided()

    def check_revocation_room(self, now: float) -> None:
        """Refuse a revocation the list could not carry, before anything is recorded.

        The list holds revoked certificates until they expire (``MAX_REVOKED`` of them at
        once); past that the operator must hear it now, not find agents missing a listing.
        """
        room = MAX_REVOKED - OVER_LIMIT_RESERVE
        if len(self.listed_revocations(now)) >= room:
            raise LocalProtocolError(
                f"the revocation list is full: {room} unexpired revoked certificates (the"
                f" last {OVER_LIMIT_RESERVE} places are kept for buyers passing their limit);"
                " one leaves it as it expires (shorter certificate lifetimes keep it shorter)"
            )

    def publish_identity(self, now: float) -> None:
        """Queue the retained, signed broker identity, with its latest key rotations."""
        info = self.info
        history = list(self.trusted.signed[-MAX_ROTATIONS:])
        body = BrokerIdentity(info.id, info.sign_key, info.agree_key, history)
        self.broadcast("identity", body, now)

    def rotate_key(self, new: AgentKeys, from_seq: int, now: float) -> BrokerKeyRotated:
        """Hand signing over to ``new``: both keys sign the statement, then ``new`` signs.

        ``from_seq`` is the ledger sequence number the returned event will take (the
        shell's ledger head + 1): its commit is the first the new key signs. The agreement
        key and the token secret stay the first key's (``SplitKeys``).
        """
        old = self.identity
        if new.sign_key in self.trusted.keys:
            raise LocalProtocolError("that signing key was the broker's before")
        statement = KeyRotation(
            broker=self.account,
            sequence=self.trusted.generation + 1,
            old_sign_key=old.sign_key,
            new_sign_key=new.sign_key,
            agree_key=old.agree_key,
            from_seq=from_seq,
            at=ms(now),
        )
        signed = sign_rotation(old, new, statement)
        event = BrokerKeyRotated(
            at=statement.at,
            broker=self.account,
            sequence=statement.sequence,
            old_sign_key=old.sign_key,
            new_sign_key=new.sign_key,
            from_seq=from_seq,
            rotation=encode(signed),
        )
        self.apply(event)  # returned, for the shell to persist (as ``open_account``)
        anchor = old.anchor if isinstance(old, SplitKeys) else old
        self.use_signer(new, anchor)
        return event

    def use_signer(self, signer: AgentKeys, anchor: AgentKeys) -> None:
        """Sign with ``signer`` (the key in force after rotations), agree with ``anchor``."""
        self.identity = SplitKeys(signer, anchor)
        history = tuple(encode(r) for r in self.trusted.signed)
        self.info = BrokerInfo(self.account, signer.sign_key, anchor.agree_key, history)

    def publish_ledger_head(self, seq: int, head: bytes, now: float) -> None:
        """Queue the retained, signed ledger head (call only with a durable head)."""
        self.broadcast("ledger-head", LedgerHead(self.account, seq, head, ms(now)), now)

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
        if parsed.header.type != "ledger-head":
            raise UnexpectedMessageError("a signed broadcast that is not a ledger head")
        body = decode_as(LedgerHead, parsed.header.body)
        verify_signed(parsed, topic, self.trusted.for_seq(body.seq))  # before a rotation: old
        return PublishedHeadSeen(body.seq, body.head, body.at)

    def message_key(self, parsed: Parsed) -> MacKey:
        """The enrollment token's key, or the pairwise key of a certified account."""
        account = self.accounts.get(parsed.header.sender)
        if account is None:
            raise AuthenticationError
        if parsed.auth is Auth.TOKEN:
            token = enrollment_token(self._token_secret, account.name, account.token_nonce)
            return MacKey(token_key(token, account.name))
        if parsed.auth is Auth.PAIR and parsed.header.type == "rekey":
            return self.rekey_key(parsed, account)
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
                case Auth.PAIR, RekeyRequest():
                    self.rekey(parsed, body, key, now)
                case Auth.PAIR, MintRequest() | Deposit() | AllowanceQuery():
                    self._other_scheme(parsed, body, key, now)
                case _:
                    raise UnexpectedMessageError(f"broker does not accept {parsed.header.type!r}")
        except RemoteProtocolError as error:
            self.reply_error(parsed, error.code, str(error), now, key)
            raise
        return [*self._take_decided()]

    def _other_scheme(
        self, parsed: Parsed, body: MintRequest | Deposit | AllowanceQuery, key: MacKey, now: float
    ) -> None:
        """Scrip (docs/SCHEMES.md 3.8) and MiniPay's daily allowance (§4)."""
        if isinstance(body, MintRequest):
            self._mint(parsed, body, key, now)
        elif isinstance(body, Deposit):
            self._deposit(parsed, body, key, now)
        else:
            self.grant_allowance(parsed, key, now)

    # --- enrollment ----------------------------------------------------------------------------

    def _enroll(self, parsed: Parsed, request: EnrollRequest, key: MacKey, now: float) -> None:
        account = self.accounts[parsed.header.sender]
        if account.certificate:
            if (account.sign_key, account.agree_key) != (request.sign_key, request.agree_key):
                raise EnrollmentError("token already spent")
            self._send_enrolled(parsed, account.certificate, key, now)
            return
        if (reason := weak_key_reason(request.sign_key, request.agree_key)) is not None:
            # Before the proof: OpenSSL accepts a proof under a small-order key from anyone.
            raise WeakKeyError(f"weak key: {reason}")
        proof_data = enroll_proof_data(
            account.name, self.account, request.sign_key, request.agree_key
        )
        try:
            verify_signature(request.sign_key, TAG_ENROLL_PROOF, proof_data, request.proof)
        except AuthenticationError as exc:
            raise EnrollmentError("proof of possession does not verify") from exc
        now_ms = ms(now)
        certificate, signed = self.new_certificate(
            account, request.sign_key, request.agree_key, now
        )
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
        # The limit and the revocation tell a buyer why it may pay no more.
        standing = (account.credit_limit, account.serial in self.revoked)
        self._reply_with_head(
            parsed,
            lambda head: Balance(*figures, head, *standing),
            key,
            now,
            corr=parsed.header.corr,
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
        """When the next reservation (a chain's, a day's allowance) or scrip serial is due."""
        due = [self._reservation_due(), self._scrip_due(), self.allowance_timer()]
        return min((when for when in due if when is not None), default=None)

    def _reservation_due(self) -> float | None:
        """When the next on-line reservation passes its redemption deadline."""
        deadlines = self._reservation_deadlines
        while deadlines and not self.chains[deadlines[0][1]].reserved:
            heapq.heappop(deadlines)  # released or redeemed in full since it was scheduled
        return deadlines[0][0] if deadlines else None

    def handle_timer(self, now: float) -> list[AnyBrokerEvent]:
        """Release reservations, allowances and scrip past their deadlines; prune replay windows."""
        self.release_allowances(now)
        while (due := self._reservation_due()) is not None and due <= now:
            _, cid = heapq.heappop(self._reservation_deadlines)
            record = self.chains[cid]
            self._record(
                ReservationReleased(
                    at=ms(now), commitment_id=cid, buyer=record.buyer, amount=record.reserved
                )
            )
        self._return_scrip(now)  # --- scrip (docs/SCHEMES.md 3.8) ---
        self.replay_guard.prune(now)
        return self._take_decided()
