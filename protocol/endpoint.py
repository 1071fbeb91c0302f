"""Machinery every role shares: the receive pipeline, the outbox, counters and key caches.

The role modules (``buyer``, ``vendor``, ``broker``) hold all the transition rules; this
module only moves bytes in and out in the checked order. ``Endpoint.receive`` is that
order, written once: size, header, addressing, key, MAC, skew and replay, authorisation,
typed decode. A role supplies how it picks a key (``message_key``) and what it does with
a decoded body (``on_message``), plus its documented exceptions as named hooks: signed
broadcasts (``on_broadcast``, where a vendor's ``offer`` carries its own signer), and the
first ``commit`` of a chain, whose MAC key comes from its own body (``on_first_commit``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from protocol import topics
from protocol.credentials import enroll_proof_data, verify_certificate
from protocol.crypto import TAG_ENROLL_PROOF, Identity, MacKey, pair_key, token_key
from protocol.envelope import (
    BROADCAST,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SKEW,
    Auth,
    Counter,
    Parsed,
    ReplayGuard,
    open_body,
    parse,
    seal,
    verify_mac,
    verify_signed,
)
from protocol.errors import (
    AuthenticationError,
    CertificateError,
    RemoteProtocolError,
    UnexpectedMessageError,
)
from protocol.events import (
    CertificateReceived,
    HeadReceived,
    HeldReply,
    LedgerHeadWitnessed,
    MessageRejected,
    Outgoing,
    RevocationsUpdated,
)
from protocol.ledger_heads import HeadVerdict, HeldHead, LedgerView, verify_head
from protocol.messages import (
    Body,
    Certificate,
    Enrolled,
    EnrollRequest,
    Error,
    LedgerHead,
    RevocationList,
    Role,
    SignedHead,
)

E = TypeVar("E")
Outcome: TypeAlias = list[E | MessageRejected]
"""What one call into a core returns: its events (every role's union has ``MessageRejected``)."""


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """The trust anchor every agent is configured with."""

    id: str
    sign_key: bytes
    agree_key: bytes


class Endpoint(Generic[E]):
    """An agent's receive pipeline, its sending side and its bookkeeping; ``E`` its events."""

    def __init__(
        self,
        account: str,
        identity: Identity,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_skew: float = DEFAULT_MAX_SKEW,
    ) -> None:
        self.account = account
        self.identity = identity
        self.max_message_size = max_message_size
        self.replay_guard = ReplayGuard(max_skew)
        self._counter = Counter()
        self._outbox: list[Outgoing] = []
        self._held: list[HeldReply] = []
        self._pair_keys: dict[str, MacKey] = {}

    def subscriptions(self) -> list[str]:
        """The MQTT topic filters this endpoint reads: its own inbox."""
        return [topics.inbox_filter(self.account)]

    # --- the receive pipeline --------------------------------------------------------------

    def receive(self, topic: str, payload: bytes, now: float) -> Outcome[E]:
        """Handle one MQTT message; never raises for anything the peer did."""
        sender = ""
        try:
            parsed = parse(payload, self.max_message_size)
            sender = parsed.header.sender
            self.check_addressing(topic, parsed)
            if parsed.auth is Auth.SIGNED:
                return self.on_broadcast(topic, parsed, now)
            key = self.message_key(parsed)
            if key is None:
                return self.on_first_commit(topic, parsed, now)
            verify_mac(parsed, topic, key)
            self.replay_guard.check(parsed, now)
            self.check_use(parsed)
            return self.on_message(parsed, open_body(parsed), key, now)
        except RemoteProtocolError as error:
            return self.on_rejected(MessageRejected(topic, sender, error))

    def message_key(self, parsed: Parsed) -> MacKey | None:
        """The MAC key of an inbox message (``None``: it comes from the body, see below).

        Raises ``AuthenticationError`` when no key fits the sender and stream.
        """
        raise AuthenticationError

    def check_use(self, parsed: Parsed) -> None:
        """Refuse an authentic message its key may not carry (before decoding its body)."""

    def on_message(self, parsed: Parsed, body: Body, key: MacKey, now: float) -> Outcome[E]:
        """What the role does with an authenticated, fresh, decoded message."""
        raise UnexpectedMessageError(f"{self.account} does not accept {parsed.header.type!r}")

    def on_broadcast(self, topic: str, parsed: Parsed, now: float) -> Outcome[E]:
        """A signed, retained broadcast: the role says whose signature it accepts."""
        raise AuthenticationError

    def on_first_commit(self, topic: str, parsed: Parsed, now: float) -> Outcome[E]:
        """The one message whose MAC key comes from its own body (the vendor's)."""
        raise AuthenticationError

    def on_rejected(self, rejected: MessageRejected) -> Outcome[E]:
        """What goes with a rejection (the broker adds the refusal it recorded)."""
        return [rejected]

    def data_to_send(self) -> list[Outgoing]:
        """Everything queued since the last call, in order; the shell publishes it."""
        out, self._outbox = self._outbox, []
        return out

    def pair_key_with(self, peer: str, peer_agree_key: bytes) -> MacKey:
        """The cached static MAC key with ``peer``."""
        key = self._pair_keys.get(peer)
        if key is None:
            key = MacKey(pair_key(self.identity, self.account, peer_agree_key, peer))
            self._pair_keys[peer] = key
        return key

    def send(  # noqa: PLR0913 - mirrors the envelope fields
        self,
        recipient: str,
        body: Body,
        now: float,
        *,
        auth: Auth,
        key: MacKey,
        ref: bytes = b"",
        corr: bytes = b"",
    ) -> None:
        """Queue a MAC'd message to one recipient's inbox."""
        topic = topics.inbox(recipient, self.account)
        counter = self._counter.next(recipient, auth, ref, now)
        payload = seal(
            topic,
            body,
            auth=auth,
            sender=self.account,
            recipient=recipient,
            counter=counter,
            now=now,
            key=key,
            ref=ref,
            corr=corr,
        )
        self._outbox.append(Outgoing(topic, payload))

    def hold(  # noqa: PLR0913 - mirrors ``send``
        self,
        recipient: str,
        body: Callable[[SignedHead | None], Body],
        now: float,
        *,
        auth: Auth,
        key: MacKey,
        corr: bytes = b"",
    ) -> None:
        """Queue a reply to be sealed once its events are durable (``held_replies``).

        Its counter is taken now, so replies keep their order; its timestamp and the
        signed ledger head are set when the shell seals it, after the commit.
        """
        topic = topics.inbox(recipient, self.account)
        counter = self._counter.next(recipient, auth, b"", now)
        sender = self.account

        def seal_with(head: SignedHead | None, sealed_at: float) -> bytes:
            return seal(
                topic,
                body(head),
                auth=auth,
                sender=sender,
                recipient=recipient,
                counter=counter,
                now=sealed_at,
                key=key,
                corr=corr,
            )

        self._held.append(HeldReply(topic, seal_with))

    def held_replies(self) -> list[HeldReply]:
        """Replies waiting for the ledger head of the commit that covers them, in order."""
        out, self._held = self._held, []
        return out

    def broadcast(self, kind: topics.PublicKind, body: Body, now: float) -> None:
        """Queue a signed, retained broadcast."""
        topic = topics.public(self.account, kind)
        counter = self._counter.next(BROADCAST, Auth.SIGNED, b"", now)
        payload = seal(
            topic,
            body,
            auth=Auth.SIGNED,
            sender=self.account,
            recipient=BROADCAST,
            counter=counter,
            now=now,
            signer=self.identity,
        )
        self._outbox.append(Outgoing(topic, payload, retain=True))

    def reply_error(
        self,
        parsed: Parsed,
        code: str,
        detail: str,
        now: float,
        key: MacKey,
    ) -> None:
        """Answer an authenticated request with an ``Error`` on the same stream."""
        self.send(
            parsed.header.sender,
            Error(code, detail[:256]),
            now,
            auth=parsed.auth,
            key=key,
            ref=parsed.header.ref,
            corr=parsed.header.corr,
        )

    def check_addressing(self, topic: str, parsed: Parsed) -> None:
        """The topic must match the header: inbox topics name recipient and sender.

        The MAC covers the topic, so this is what ties the MQTT identity (which ACLs bind to
        the topic) to the envelope's sender. A mismatch is an authentication failure.
        """
        parts = topics.split(topic)
        header = parsed.header
        if parts is None:
            raise AuthenticationError
        kind, first, second = parts
        if kind == "in":
            if first != self.account or header.recipient != self.account:
                raise AuthenticationError
            if second != header.sender or parsed.auth is Auth.SIGNED:
                raise AuthenticationError
        elif (
            first != header.sender
            or header.recipient != BROADCAST
            or parsed.auth is not Auth.SIGNED
        ):
            raise AuthenticationError


class AgentEndpoint(Endpoint[E]):
    """A buyer's or vendor's endpoint: knows its broker and enrolls with it."""

    role: Role

    def __init__(
        self,
        account: str,
        identity: Identity,
        broker: BrokerInfo,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_skew: float = DEFAULT_MAX_SKEW,
    ) -> None:
        super().__init__(account, identity, max_message_size=max_message_size, max_skew=max_skew)
        self.broker = broker
        self.broker_key = self.pair_key_with(broker.id, broker.agree_key)
        self.token_key: MacKey | None = None
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
        verify_signed(parsed, topic, self.broker.sign_key)
        return self.on_broker_broadcast(topic, parsed, now)

    def on_offer(self, topic: str, parsed: Parsed, now: float) -> Outcome[E]:
        """A broadcast signed by a key its own body certifies (the buyer reads offers)."""
        raise AuthenticationError

    def on_broker_broadcast(self, topic: str, parsed: Parsed, now: float) -> Outcome[E]:
        """What the role does with a verified broker broadcast."""
        raise UnexpectedMessageError(f"{self.account} does not read {parsed.header.type!r}")

    def message_key(self, parsed: Parsed) -> MacKey | None:
        """From the broker: the pairwise key, or the enrollment token's."""
        return self.broker_message_key(parsed)

    def check_use(self, parsed: Parsed) -> None:
        """The enrollment token authenticates only the enrollment answer."""
        self.check_token_use(parsed)

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
        verify_head(self.broker.sign_key, self.broker.id, signed)
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
        request = EnrollRequest(identity.sign_key, identity.agree_key, proof)
        self.send(self.broker.id, request, now, auth=Auth.TOKEN, key=self.token_key)

    def restore_certificate(self, signed: bytes, now: float) -> Certificate:
        """Adopt a certificate (from enrollment or the agent's store), checked in full."""
        broker = self.broker
        certificate = verify_certificate(signed, broker.sign_key, broker.id, now, role=self.role)
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
        """The enrollment token authenticates only the enrollment answer (or its refusal)."""
        if parsed.auth is Auth.TOKEN and parsed.header.type not in ("enrolled", "error"):
            raise UnexpectedMessageError("only enrollment travels under the token key")

    def enrolled(self, parsed: Parsed, body: Enrolled, now: float) -> CertificateReceived:
        """Handle the broker's answer to ``enroll``."""
        if parsed.auth is not Auth.TOKEN:
            raise UnexpectedMessageError("certificates arrive on the enrollment stream only")
        certificate = self.restore_certificate(body.certificate, now)
        self.token_key = None
        return CertificateReceived(body.certificate, certificate.serial)
