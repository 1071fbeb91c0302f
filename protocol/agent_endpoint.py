"""A buyer's or vendor's endpoint: trusts one broker, enrolls with it, watches its ledger.

It reads the broker's signed broadcasts (revocation lists, ledger heads), judges every
signed ledger head it is shown against the ones it holds (``protocol.ledger_heads``), and
holds the enrollment token only until the certificate arrives. It follows the broker's
signing key through rotations that chain from the key it was configured with
(``protocol.trusted_keys``), and rotates its own keys on request (``rekey``).
"""

from __future__ import annotations

from typing import TypeVar

from protocol import topics
from protocol.codec import decode_as, decode_rotations, decode_signed_rotation, encode_rotations
from protocol.credentials import enroll_proof_data, verify_certificate
from protocol.crypto import TAG_ENROLL_PROOF, AgentKeys, MacKey, token_key
from protocol.endpoint import BrokerInfo, Endpoint, Outcome
from protocol.envelope import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SKEW,
    Auth,
    CounterSource,
    Parsed,
    clock_counter,
    open_body,
    verify_signed,
)
from protocol.errors import (
    AuthenticationError,
    CertificateError,
    KeyRotationError,
    LocalProtocolError,
    RemoteProtocolError,
    UnexpectedMessageError,
)
from protocol.events import (
    BrokerKeyAccepted,
    CertificateReceived,
    HeadReceived,
    KeysRekeyed,
    LedgerHeadWitnessed,
    MessageRejected,
    RevocationsUpdated,
)
from protocol.ledger_heads import HeadVerdict, HeldHead, LedgerView, verify_head
from protocol.messages import (
    BrokerIdentity,
    Certificate,
    Enrolled,
    EnrollRequest,
    LedgerHead,
    Rekeyed,
    RekeyRequest,
    RevocationList,
    Role,
    SignedHead,
)
from protocol.rekey import rekey_request
from protocol.trusted_keys import TrustedKeys

E = TypeVar("E")

ENROLL_RETRY = 2.0
"""First wait before an unanswered enrollment request is sent again (s); it doubles."""
ENROLL_RETRY_MAX = 30.0
REKEY_CORR = b"rekey"
"""The correlation id of rekey requests, so that the broker's refusal ends the retries."""


class AgentEndpoint(Endpoint[E]):
    """A buyer's or vendor's endpoint: knows its broker and enrolls with it."""

    role: Role

    def __init__(  # noqa: PLR0913 - identity, trust anchor, limits
        self,
        account: str,
        identity: AgentKeys,
        broker: BrokerInfo,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_skew: float = DEFAULT_MAX_SKEW,
        counter_source: CounterSource = clock_counter,
    ) -> None:
        super().__init__(
            account,
            identity,
            max_message_size=max_message_size,
            max_skew=max_skew,
            counter_source=counter_source,
        )
        self.broker = broker
        pinned = TrustedKeys.pinned_to(broker.id, broker.sign_key, broker.agree_key)
        self.broker_keys = pinned.extend(decode_signed_rotation(r) for r in broker.rotations)
        """The broker's signing keys: the configured one and those rotations chained to it."""
        # broker broadcasts no known key verified, by topic: tried again after a rotation
        self._unverified: dict[str, Parsed] = {}
        self.broker_key = self.pair_key_with(broker.id, broker.agree_key)
        self.token_key: MacKey | None = None
        # the enrollment request, resent until the broker answers (it may not be up yet)
        self._enrollment: EnrollRequest | None = None
        self._enroll_due = 0.0
        self._enroll_backoff = ENROLL_RETRY
        # a rekey request and the keys it asks for, resent until the broker answers
        self._rekey: tuple[RekeyRequest, AgentKeys] | None = None
        self._rekey_due = 0.0
        self._rekey_backoff = ENROLL_RETRY
        self.certificate = b""
        self.certified: Certificate | None = None
        self.revoked: frozenset[int] = frozenset()
        self._revocation_sequence = -1
        self.ledger_view = LedgerView()

    def subscriptions(self) -> list[str]:
        """Its inbox and the broker's retained identity and revocation list."""
        broker = self.broker.id
        return [
            *super().subscriptions(),
            topics.public(broker, "identity"),
            topics.public(broker, "revocations"),
            topics.public(broker, "ledger-head"),
        ]

    def on_broadcast(self, topic: str, parsed: Parsed, now: float) -> Outcome[E]:
        """The broker's broadcasts, checked against its key; other signers offer (``on_offer``)."""
        if parsed.header.sender != self.broker.id:
            return self.on_offer(topic, parsed, now)
        if parsed.header.type == "identity":
            return self._identity(topic, parsed, now)
        try:
            verify_signed(parsed, topic, self._broadcast_key(parsed))
        except AuthenticationError:
            self._unverified[topic] = parsed  # perhaps signed by a key we are yet to learn
            raise
        self._unverified.pop(topic, None)
        return self.on_broker_broadcast(topic, parsed, now)

    def _broadcast_key(self, parsed: Parsed) -> bytes:
        """A ledger head is signed by the key in force at its ``seq``; the rest, the current."""
        keys = self.broker_keys
        if parsed.header.type == "ledger-head" and keys.statements:
            return keys.for_seq(decode_as(LedgerHead, parsed.header.body).seq)
        return keys.current

    def _identity(self, topic: str, parsed: Parsed, now: float) -> Outcome[E]:
        """The broker's identity: a newer signing key is adopted if it chains from ours.

        The body is read before the signature is checked, as an offer's is, since it
        holds the key history the signing key is only trusted through.
        """
        body = decode_as(BrokerIdentity, parsed.header.body)
        if body.broker != self.broker.id or body.agree_key != self.broker.agree_key:
            raise KeyRotationError("the broker's identity names another broker or agreement key")
        keys = self.broker_keys.extend(body.rotations)
        if not keys.trusts(body.sign_key):
            raise KeyRotationError("the broker's identity is signed by a key outside its history")
        verify_signed(parsed, topic, body.sign_key)
        events: Outcome[E] = []
        if keys is not self.broker_keys:
            self.broker_keys = keys
            history = encode_rotations(list(keys.signed))
            accepted = BrokerKeyAccepted(keys.current, keys.generation, history)
            events.append(accepted)  # type: ignore[arg-type]
            events.extend(self._retry_unverified(now))
        events.extend(self.on_broker_broadcast(topic, parsed, now))
        return events

    def _retry_unverified(self, now: float) -> Outcome[E]:
        """Broadcasts refused before the rotation was known, checked again under the new key."""
        events: Outcome[E] = []
        for topic, parsed in list(self._unverified.items()):
            try:
                events.extend(self.on_broadcast(topic, parsed, now))
            except RemoteProtocolError as error:
                events.append(MessageRejected(topic, parsed.header.sender, error))
        return events

    def restore_broker_keys(self, history: bytes) -> TrustedKeys:
        """Trust the rotations kept from an earlier run, if they chain from the configured key.

        Raises ``KeyRotationError`` (keep the configured key alone) when they do not: the
        agent was pointed at another broker, or its key history was tampered with.
        """
        self.broker_keys = self.broker_keys.extend(decode_rotations(history))
        return self.broker_keys

    def on_offer(self, topic: str, parsed: Parsed, now: float) -> Outcome[E]:
        """A broadcast signed by a key its own body certifies (the buyer reads offers)."""
        raise AuthenticationError

    def on_broker_broadcast(self, topic: str, parsed: Parsed, now: float) -> Outcome[E]:
        """What the role does with a verified broker broadcast."""
        raise UnexpectedMessageError(f"{self.account} does not read {parsed.header.type!r}")

    def message_key(self, parsed: Parsed) -> MacKey | None:
        """From the broker: the pairwise key, or the enrollment token's."""
        return self.broker_message_key(parsed)

    def broker_broadcast(
        self, topic: str, parsed: Parsed
    ) -> list[RevocationsUpdated | LedgerHeadWitnessed]:
        """A broadcast whose broker signature has been verified: revocations, ledger heads."""
        body = open_body(parsed)
        if isinstance(body, RevocationList):
            if body.sequence <= self._revocation_sequence:
                return []
            self._revocation_sequence = body.sequence
            self.revoked = frozenset(body.serials)
            return [RevocationsUpdated(body.sequence, self.revoked)]
        if isinstance(body, LedgerHead) and body.issuer == self.broker.id:
            verdict = self._judge(HeldHead(body.seq, body.head, body.at, b""))
            envelope = parsed.signed_part + parsed.trailer
            return [LedgerHeadWitnessed(body.seq, body.head, body.at, topic, envelope, verdict)]
        return []

    @property
    def witnessed_seq(self) -> int:
        """The highest ledger sequence number the broker has vouched for to this agent."""
        return self.ledger_view.vouched

    def head_from_reply(
        self, parsed: Parsed, signed: SignedHead | None, scope: bytes
    ) -> HeadReceived | None:
        """Check and judge the signed head a money reply carried (``None``: it had none)."""
        if signed is None:
            return None
        verify_head(self.broker_keys.for_seq(signed.seq), self.broker.id, signed)
        at = parsed.header.timestamp
        verdict = self._judge(HeldHead(signed.seq, signed.head, at, scope))
        return HeadReceived(scope, signed, at, verdict)

    def _judge(self, held: HeldHead) -> HeadVerdict:
        view = self.ledger_view
        verdict = view.judge(held.seq, held.head, held.at)
        if verdict in ("new", "seen"):
            view.keep(held)
        elif verdict in ("contradiction", "regression"):
            view.follow(held)
        return verdict

    def enroll(self, token: bytes, now: float) -> None:
        """Queue an enrollment request authenticated by the operator's one-time token."""
        self.token_key = MacKey(token_key(token, self.account))
        identity = self.identity
        proof = identity.sign(
            TAG_ENROLL_PROOF,
            enroll_proof_data(self.account, self.broker.id, identity.sign_key, identity.agree_key),
        )
        self._enrollment = EnrollRequest(identity.sign_key, identity.agree_key, proof)
        self._enroll_backoff = ENROLL_RETRY
        self._send_enrollment(now)

    def _send_enrollment(self, now: float) -> None:
        if self._enrollment is None or self.token_key is None:
            return
        self.send(self.broker.id, self._enrollment, now, auth=Auth.TOKEN, key=self.token_key)
        self._enroll_due = now + self._enroll_backoff
        self._enroll_backoff = min(self._enroll_backoff * 2, ENROLL_RETRY_MAX)

    def enrollment_timer(self) -> float | None:
        """When an unanswered enrollment or rekey request is sent again (repeats are answered)."""
        due = [
            *([self._enroll_due] if self._enrollment is not None else []),
            *([self._rekey_due] if self._rekey is not None else []),
        ]
        return min(due) if due else None

    def resend_enrollment(self, now: float) -> None:
        """Send the enrollment or rekey request again if it is due and still unanswered."""
        if self._enrollment is not None and self._enroll_due <= now:
            self._send_enrollment(now)
        if self._rekey is not None and self._rekey_due <= now:
            self._send_rekey(now)

    def rekey(self, new: AgentKeys, now: float) -> RekeyRequest:
        """Ask the broker to certify ``new`` in place of our keys (persist ``new`` first).

        Resent until the broker answers; a restart that finds the same new keys pending
        asks again, and the broker answers the repeat with the same certificate.
        """
        certified = self.certified
        if certified is None:
            raise LocalProtocolError("enroll before rotating keys")
        request = rekey_request(self.account, self.broker.id, certified.serial, self.identity, new)
        self._rekey = (request, new)
        self._rekey_backoff = ENROLL_RETRY
        self._send_rekey(now)
        return request

    @property
    def rekeying(self) -> bool:
        """Whether a rekey request is waiting for the broker's answer."""
        return self._rekey is not None

    def _send_rekey(self, now: float) -> None:
        if self._rekey is None:
            return
        request = self._rekey[0]
        self.send(
            self.broker.id, request, now, auth=Auth.PAIR, key=self.broker_key, corr=REKEY_CORR
        )
        self._rekey_due = now + self._rekey_backoff
        self._rekey_backoff = min(self._rekey_backoff * 2, ENROLL_RETRY_MAX)

    def rekey_refused(self, corr: bytes) -> None:
        """The broker refused our rekey request: the same request would be refused again."""
        if corr == REKEY_CORR:
            self._rekey = None

    def rekeyed(
        self, parsed: Parsed, body: Rekeyed, now: float
    ) -> list[CertificateReceived | KeysRekeyed]:
        """The certificate for our new keys: from now on they are ours, and so is its pair key."""
        if parsed.auth is not Auth.PAIR or self._rekey is None or self.certified is None:
            raise UnexpectedMessageError("no rekey request is waiting for an answer")
        new = self._rekey[1]
        certificate = verify_certificate(
            body.certificate, self.broker_keys, self.broker.id, now, role=self.role
        )
        if certificate.subject != self.account or (
            certificate.sign_key,
            certificate.agree_key,
        ) != (new.sign_key, new.agree_key):
            raise CertificateError("certificate is not for the keys we asked for")
        old_serial = self.certified.serial
        self.identity = new
        self._pair_keys.clear()
        self.broker_key = self.pair_key_with(self.broker.id, self.broker.agree_key)
        self.certificate, self.certified = body.certificate, certificate
        self._rekey = None
        return [
            CertificateReceived(body.certificate, certificate.serial),
            KeysRekeyed(body.certificate, certificate.serial, old_serial),
        ]

    def restore_certificate(self, signed: bytes, now: float) -> Certificate:
        """Adopt a certificate (from enrollment or the agent's store), checked in full."""
        broker = self.broker
        certificate = verify_certificate(signed, self.broker_keys, broker.id, now, role=self.role)
        identity = self.identity
        keys = (certificate.sign_key, certificate.agree_key)
        if certificate.subject != self.account or keys != (identity.sign_key, identity.agree_key):
            raise CertificateError("certificate is not for this agent's keys")
        self.certificate = signed
        self.certified = certificate
        return certificate

    def broker_message_key(self, parsed: Parsed) -> MacKey:
        """The key of a MAC'd message from the broker (pairwise, or the enrollment token's)."""
        if parsed.header.sender != self.broker.id:
            raise AuthenticationError
        if parsed.auth is Auth.PAIR:
            return self.broker_key
        if parsed.auth is Auth.TOKEN and self.token_key is not None:
            return self.token_key
        raise AuthenticationError

    def check_token_use(self, parsed: Parsed) -> None:
        """The enrollment token authenticates only the enrollment answer (or its refusal).

        Either answer ends the retransmission of the request: a refusal would be repeated.
        """
        if parsed.header.type not in ("enrolled", "error"):
            raise UnexpectedMessageError("only enrollment travels under the token key")
        self._enrollment = None

    def enrolled(self, parsed: Parsed, body: Enrolled, now: float) -> CertificateReceived:
        """Handle the broker's answer to ``enroll``."""
        if parsed.auth is not Auth.TOKEN:
            raise UnexpectedMessageError("certificates arrive on the enrollment stream only")
        certificate = self.restore_certificate(body.certificate, now)
        self.token_key = None
        return CertificateReceived(body.certificate, certificate.serial)
