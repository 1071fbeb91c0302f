"""Machinery every role shares: the receive pipeline, the outbox, counters and key caches.

The role modules (``buyer``, ``vendor``, ``broker``) hold all the transition rules; this
module only moves bytes in and out in the checked order. ``Endpoint.receive`` is that
order, written once: size, header, addressing, key, MAC, skew and replay, authorisation,
typed decode. A role supplies how it picks a key (``message_key``) and what it does with
a decoded body (``on_message``), plus its documented exceptions as named hooks: signed
broadcasts (``on_broadcast``, where a vendor's ``offer`` carries its own signer), the
first ``commit`` of a chain, whose MAC key comes from its own body (``on_first_commit``),
and scrip payments, keyed by a customer secret (``scrip_message_key``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from protocol import topics
from protocol.crypto import AgentKeys, MacKey, pair_key
from protocol.envelope import (
    BROADCAST,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SKEW,
    Auth,
    Counter,
    CounterSource,
    Parsed,
    ReplayGuard,
    clock_counter,
    open_body,
    parse,
    seal,
    verify_mac,
)
from protocol.errors import (
    AuthenticationError,
    RemoteProtocolError,
    UnexpectedMessageError,
)
from protocol.events import (
    HeldReply,
    MessageRejected,
    Outgoing,
)
from protocol.messages import (
    Body,
    Error,
    SignedHead,
)

E = TypeVar("E")
TOPICS_KEPT = 4096
"""Topics whose split is kept; past that the cache starts again (a flood of odd topics)."""
Outcome: TypeAlias = list[E | MessageRejected]
"""What one call into a core returns: its events (every role's union has ``MessageRejected``)."""


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """The trust anchor every agent is configured with.

    ``rotations`` are the ``SignedRotation`` bytes of the broker's key history, oldest
    first, when its key was rotated: they vouch for the keys before ``sign_key``, which
    signed the certificates issued then (docs/PROTOCOL.md 11.11).
    """

    id: str
    sign_key: bytes
    agree_key: bytes
    rotations: tuple[bytes, ...] = ()


class Endpoint(Generic[E]):
    """An agent's receive pipeline, its sending side and its bookkeeping; ``E`` its events."""

    def __init__(
        self,
        account: str,
        identity: AgentKeys,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_skew: float = DEFAULT_MAX_SKEW,
        counter_source: CounterSource = clock_counter,
    ) -> None:
        self.account = account
        self.identity = identity
        self.max_message_size = max_message_size
        self.replay_guard = ReplayGuard(max_skew)
        self._counter = Counter(counter_source)
        self._outbox: list[Outgoing] = []
        self._held: list[HeldReply] = []
        self._pair_keys: dict[str, MacKey] = {}
        self._topic_parts: dict[str, tuple[str, str, str] | None] = {}  # topics.split, kept

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
            key = (
                self.scrip_message_key(parsed)
                if parsed.auth is Auth.SCRIP
                else self.message_key(parsed)
            )
            if key is None:
                return self.on_first_commit(topic, parsed, now)
            verify_mac(parsed, topic, key)
            self.replay_guard.check(parsed, now)
            if parsed.auth is Auth.TOKEN:
                self.check_token_use(parsed)
            return self.on_message(parsed, open_body(parsed), key, now)
        except RemoteProtocolError as error:
            return self.on_rejected(MessageRejected(topic, sender, error))

    def message_key(self, parsed: Parsed) -> MacKey | None:
        """The MAC key of an inbox message (``None``: it comes from the body, see below).

        Raises ``AuthenticationError`` when no key fits the sender and stream.
        """
        raise AuthenticationError

    def scrip_message_key(self, parsed: Parsed) -> MacKey:
        """The customer secret that authenticates a ``SCRIP`` message (docs/SCHEMES.md 3.4).

        A role that takes no scrip keeps this default: no key, so the message is refused
        as unauthenticated before anything in it is decoded. Raises ``AuthenticationError``.
        """
        raise AuthenticationError

    def check_token_use(self, parsed: Parsed) -> None:
        """Refuse, before decoding it, a message the enrollment token may not carry."""

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

    def _split(self, topic: str) -> tuple[str, str, str] | None:
        """``topics.split``, kept per topic: an inbox sees one topic per peer, many times."""
        try:
            return self._topic_parts[topic]
        except KeyError:
            parts = topics.split(topic)
            if len(self._topic_parts) >= TOPICS_KEPT:
                self._topic_parts.clear()
            self._topic_parts[topic] = parts
            return parts

    def check_addressing(self, topic: str, parsed: Parsed) -> None:
        """The topic must match the header: inbox topics name recipient and sender.

        The MAC covers the topic, so this is what ties the MQTT identity (which ACLs bind to
        the topic) to the envelope's sender. A mismatch is an authentication failure.
        """
        parts = self._split(topic)
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
