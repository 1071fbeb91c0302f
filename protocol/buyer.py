"""The buyer's state machine: enroll, read offers, commit to chains, pay, follow receipts.

All transition rules for the buyer live here. The wallet's durable state is small: the
certificate, and per chain the seed, the signed commitment and its spend reservation (no
payword above it has left). Everything else is rebuilt from those. A chain is held as
every √n-th word (``chain_checkpoints``), so a long chain costs kilobytes, not megabytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from dataclasses import dataclass

from protocol import topics
from protocol.allowance import chain_end, verify_grant
from protocol.buyer_allowance import ALLOWANCE_CORR, GrantCache
from protocol.buyer_channel import Channel, ChannelState
from protocol.buyer_rules import (
    item_refusal,
    jumped_a_gap,
    pay_refusal,
    payment_corr,
    payment_steps,
    refused_index,
    vendor_refusal,
    wallet_behind,
)
from protocol.buyer_scrip import BuyerScrip
from protocol.chain import PaywordChain
from protocol.chain_checkpoints import CheckpointedChain
from protocol.codec import decode_as, decode_commitment, decode_signed
from protocol.credentials import (
    NOT_BEFORE_ALLOWANCE_MS,
    commitment_id,
    sign_commitment,
    verify_certificate,
)
from protocol.crypto import AgentKeys, MacKey, chain_key, weak_key_reason
from protocol.endpoint import BrokerInfo
from protocol.envelope import (
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_SKEW,
    Auth,
    CounterSource,
    Parsed,
    clock_counter,
    verify_signed,
)
from protocol.errors import (
    AllowanceError,
    AuthenticationError,
    CertificateError,
    LocalProtocolError,
    UnexpectedMessageError,
)
from protocol.events import (
    AllowanceReceived,
    BalanceReceived,
    BuyerEvent,
    ChannelOpened,
    InvoiceReceived,
    OfferReceived,
    PaywordSpent,
    PeerError,
    ReceiptReceived,
    ScripPaymentSent,
    SpendReserved,
)
from protocol.messages import (
    Allowance,
    AllowanceGrant,
    AllowanceQuery,
    Balance,
    BalanceQuery,
    Body,
    Certificate,
    Commit,
    Commitment,
    Enrolled,
    Error,
    Invoice,
    InvoiceQuery,
    Minted,
    Offer,
    Payment,
    Receipt,
    Rekeyed,
)

DEFAULT_RESERVE_AHEAD = 64
"""Units a payment reserves ahead of what was spent: one wallet write per 64 units."""


@dataclass(slots=True)
class _VendorOffer:
    offer: Offer
    certificate: Certificate
    timestamp: int


class BuyerCore(BuyerScrip):
    """Bytes in, buyer events and bytes out. No I/O, no clock: ``now`` is an argument."""

    role = "buyer"
    retry_initial = 2.0
    retry_max = 60.0
    max_futile_rounds = 5

    def __init__(  # noqa: PLR0913 - identity, trust anchor, limits
        self,
        account: str,
        identity: AgentKeys,
        broker: BrokerInfo,
        *,
        random: Callable[[int], bytes] = os.urandom,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_skew: float = DEFAULT_MAX_SKEW,
        reserve_ahead: int = DEFAULT_RESERVE_AHEAD,
        counter_source: CounterSource = clock_counter,
        offers_from: Collection[str] | None = None,
    ) -> None:
        super().__init__(
            account,
            identity,
            broker,
            random=random,
            max_message_size=max_message_size,
            max_skew=max_skew,
            counter_source=counter_source,
        )
        if reserve_ahead < 0:
            raise LocalProtocolError(f"reserve_ahead is a number of units, not {reserve_ahead}")
        self.reserve_ahead = reserve_ahead
        # the vendors whose offers it reads; ``None``: every vendor's
        self.offers_from = None if offers_from is None else tuple(dict.fromkeys(offers_from))
        if any("+" in v or "#" in v or "/" in v for v in self.offers_from or ()):
            raise LocalProtocolError("a vendor's name has no MQTT wildcard and no '/'")
        self.offers: dict[str, _VendorOffer] = {}
        self.channels: dict[bytes, Channel] = {}
        self.allowance = GrantCache()  # MiniPay: today's grant (docs/SCHEMES.md 4.2)

    def subscriptions(self) -> list[str]:
        """Also the retained offers: of the vendors it pays, or of every vendor.

        A device paying one vendor reads that vendor's offer alone: the broker then sends
        it nothing about the others (docs/PROTOCOL.md 16.4).
        """
        if self.offers_from is None:
            return [*super().subscriptions(), topics.public_filter("offer")]
        offers = [topics.public(vendor, "offer") for vendor in self.offers_from]
        return [*super().subscriptions(), *offers]

    # --- channels and payments -----------------------------------------------------------------

    def open_channel(
        self, vendor: str, length: int, now: float, lifetime: float = 86_400.0
    ) -> ChannelOpened:
        """Sign a commitment to a fresh chain for ``vendor``; persist the event, then send."""
        if self.certified is None:
            raise LocalProtocolError("enroll before opening a channel")
        known = self.offers.get(vendor)
        if known is None:
            raise LocalProtocolError(f"no offer from vendor {vendor!r} yet")
        if (revoked := self.vendor_revoked(vendor)) is not None:
            raise LocalProtocolError(revoked)
        offer = known.offer
        if length > offer.max_length:
            raise LocalProtocolError(
                f"{vendor} accepts chains of at most {offer.max_length} units, not {length}"
            )
        limit = self.certified.credit_limit
        affordable = limit // offer.unit_value
        if affordable < 1:
            raise LocalProtocolError(f"your credit limit of {limit} is below one unit at {vendor}")
        length = min(length, affordable)  # vendors refuse chains worth more than the limit
        not_after = min(int((now + lifetime) * 1000), self.certified.not_after)
        if offer.allowance:
            not_after = chain_end(now, not_after)  # off-line under a grant: ends today
        seed = self._random(32)
        chain = CheckpointedChain(seed, length)
        commitment = Commitment(
            vendor,
            self.certificate,
            chain.root,
            length,
            offer.unit_value,
            offer.currency,
            int(now * 1000),
            not_after,
        )
        signed, cid = sign_commitment(self.identity, commitment)
        self._install(cid, vendor, chain, seed, signed, 0)
        self._send_commit(self.channels[cid], now)
        return ChannelOpened(cid, vendor, seed, signed, length)

    def restore_channel(
        self, vendor: str, seed: bytes, commitment: bytes, length: int, reserved: int
    ) -> Channel:
        """Reinstate a channel from the wallet after a restart, spent up to its reservation.

        Any payword up to ``reserved`` may have left before the restart, so none of them is
        revealed again: the next payment goes above it, and the units in between are lost.
        """
        chain = CheckpointedChain(seed, length)
        cid = commitment_id(decode_signed(commitment).body)
        channel = self._install(cid, vendor, chain, seed, commitment, reserved)
        channel.reserved = reserved
        channel.resumed = True
        return channel

    def _install(  # noqa: PLR0913
        self, cid: bytes, vendor: str, chain: PaywordChain, seed: bytes, signed: bytes, spent: int
    ) -> Channel:
        known = self.offers.get(vendor)
        if known is None:
            raise LocalProtocolError(f"no offer from vendor {vendor!r} yet")
        key = MacKey(
            chain_key(self.identity, known.certificate.agree_key, self.account, vendor, cid)
        )
        commitment = decode_commitment(decode_signed(signed).body)
        channel = Channel(
            cid,
            vendor,
            chain,
            seed,
            signed,
            known.offer.unit_value,
            known.offer.max_jump,
            key,
            spent,
            not_after=commitment.not_after,
            # A rekey on either side since: the chain key was agreed with other keys.
            ended=commitment.buyer_certificate != self.certificate
            or commitment.issued_at < known.certificate.not_before - NOT_BEFORE_ALLOWANCE_MS,
        )
        self.channels[cid] = channel
        return channel

    def resume(self, cid: bytes, now: float) -> None:
        """Send a restored channel's commit again, before paying on it.

        The vendor answers with a receipt for the index it holds, so a wallet restored
        from an older copy learns how far it had really spent before it pays again.
        """
        self._send_commit(self.channels[cid], now)

    def _send_commit(self, channel: Channel, now: float) -> None:
        grant = b""
        known = self.offers.get(channel.vendor)
        if known is not None and known.offer.allowance:
            if not self.allowance.known(now):  # the commit waits for today's grant
                self.allowance.waiting.add(channel.id)
                if self.allowance.should_ask(now):
                    self.query_allowance(now)
                self._arm_retry(channel, now)
                return
            grant = self.allowance.today(now)
        self.send(
            channel.vendor,
            Commit(channel.commitment, grant),
            now,
            auth=Auth.CHAIN,
            key=channel.key,
            ref=channel.id,
        )
        self._arm_retry(channel, now)

    def pay(self, cid: bytes, units: int, now: float, item: str = "") -> PaywordSpent:
        """Pay ``units`` on a chain; persist the returned event before publishing.

        A jump larger than the vendor's maximum goes out as several payments, the last of
        them naming ``item``, which must be on the vendor's offer and paid in full. A
        payment past the spend reservation extends it first (``Channel.reserve``): the
        event then carries the new reservation, which must be durable before the payword
        leaves. A payment within it needs no write.
        """
        channel = self.channels.get(cid)
        if channel is None:
            raise LocalProtocolError("unknown channel")
        if (revoked := self.vendor_revoked(channel.vendor)) is not None:
            raise LocalProtocolError(revoked)
        if units < 1 or units > channel.remaining:
            raise LocalProtocolError(
                f"this chain to {channel.vendor} has {channel.remaining} of"
                f" {channel.chain.length} units left, so it cannot pay {units}:"
                " open a new chain for more"
            )
        if item:
            offer = self.offers[channel.vendor].offer
            refusal = item_refusal(channel.vendor, offer, item, units, channel.max_jump)
            if refusal is not None:
                raise LocalProtocolError(refusal)
        target = channel.spent + units
        reserved = channel.reserve(target, self.reserve_ahead)
        start = channel.spent
        if channel.resumed and channel.acknowledged >= 0:
            # The paywords between the vendor's index and the restored reservation may never
            # have left: step up from the vendor's index, so that no jump is too large.
            start = channel.acknowledged
        channel.resumed = False
        self._send_steps(channel, start, target, item, now)
        channel.spent = target
        channel.last_item = item
        self._arm_retry(channel, now)
        return PaywordSpent(cid, channel.spent, reserved)

    def pay_scrip(self, vendor: str, price: int, now: float, item: str = "") -> ScripPaymentSent:
        """Pay ``price`` (an item's, when one is named) with scrip for ``vendor``.

        Only scrip under the vendor's current certificate is spent: a rekeyed vendor can no
        longer check the older. Persist the event before publishing: until the vendor
        answers, exactly this payment is resent.
        """
        known = self.offers.get(vendor)
        if known is None:
            raise LocalProtocolError(f"no offer from vendor {vendor!r} yet")
        if (revoked := self.vendor_revoked(vendor)) is not None:
            raise LocalProtocolError(revoked)
        serial = known.certificate.serial
        return self.send_scrip_payment(vendor, known.offer, serial, price, item, now)

    def scrip_value(self, vendor: str, now: float) -> list[int]:
        """The values of the scrip ``vendor`` would take now, as separate pieces."""
        known = self.offers.get(vendor)
        if known is None:
            return []
        return [h.scrip.value for h in self.usable_scrip(vendor, known.certificate.serial, now)]

    def release(self, cid: bytes) -> SpendReserved:
        """Hand back what a chain reserved beyond what it spent; persist the event.

        A paying session calls it when it ends: the next one reserves again, and the
        wallet counts as paid only what was paid.
        """
        channel = self.channels.get(cid)
        if channel is None:
            raise LocalProtocolError("unknown channel")
        return SpendReserved(cid, channel.release())

    def vendor_revoked(self, vendor: str) -> str | None:
        """Why ``vendor`` may not be paid if the newest revocation list names its certificate.

        Offers and revocation lists arrive on separate retained topics in no set order, so
        an offer taken before the list that revokes its vendor is checked again here, at
        every commitment and payment (docs/PROTOCOL.md 11.3).
        """
        known = self.offers.get(vendor)
        if known is None or known.certificate.serial not in self.revoked:
            return None
        return (
            f"{vendor}'s certificate (serial {known.certificate.serial}) is revoked:"
            " the broker no longer vouches for it, so this wallet pays it nothing more"
        )

    def refusal(self, vendor: str, plan: list[int], item: str, paid: int, now: float) -> str | None:
        """Why this wallet would not pay ``plan`` (units per payment) to ``vendor`` now.

        ``paid``: what the wallet has paid in all, at every vendor (``pay_refusal``).
        """
        known = self.offers.get(vendor)
        if known is None:
            return f"no offer from vendor {vendor!r} yet"
        if (revoked := self.vendor_revoked(vendor)) is not None:
            return revoked
        mine = [c for c in self.channels.values() if c.vendor == vendor]
        certified, offer = self.certified, known.offer
        return pay_refusal(certified, self.revoked, vendor, offer, mine, plan, item, paid, now)

    def _send_steps(self, channel: Channel, start: int, end: int, item: str, now: float) -> None:
        """Pay from ``start`` up to ``end`` in steps the vendor accepts, ``item`` on the last."""
        steps = payment_steps(start, end, channel.max_jump)
        for index in steps:
            self._send_payment(channel, index, item if index == end else "", now)
        if steps:
            channel.stepped_from = steps[-2] if len(steps) > 1 else start

    def _send_payment(self, channel: Channel, index: int, item: str, now: float) -> None:
        payment = Payment(channel.id, index, channel.chain.word(index), item)
        self.send(
            channel.vendor,
            payment,
            now,
            auth=Auth.CHAIN,
            key=channel.key,
            ref=channel.id,
            corr=payment_corr(index),
        )

    def _resend_payments(self, channel: Channel, now: float) -> None:
        """Re-send what is unacknowledged, in steps the vendor accepts, ending at ``spent``.

        The vendor re-acknowledges the step it already holds and accepts the rest, so a
        retransmission can neither be refused as too large a jump nor credit anything twice.
        """
        start = max(channel.acknowledged, 0)
        self._send_steps(channel, start, channel.spent, channel.last_item, now)

    def _arm_retry(self, channel: Channel, now: float) -> None:
        if channel.state is ChannelState.ABANDONED:
            channel.resume()  # a new payment tries again
        if channel.retry_due is None:
            channel.backoff = self.retry_initial
            channel.retry_due = now + channel.backoff

    # --- queries -------------------------------------------------------------------------------

    def query_balance(self, now: float, corr: bytes = b"") -> None:
        """Ask the broker for this account's balance."""
        self.send(
            self.broker.id, BalanceQuery(), now, auth=Auth.PAIR, key=self.broker_key, corr=corr
        )

    def query_allowance(self, now: float) -> None:
        """Ask the broker for today's allowance grant (docs/SCHEMES.md 4.2)."""
        self.send(
            self.broker.id,
            AllowanceQuery(),
            now,
            auth=Auth.PAIR,
            key=self.broker_key,
            corr=ALLOWANCE_CORR,
        )

    def query_invoice(self, now: float, corr: bytes = b"") -> None:
        """Ask the broker for this account's invoice of the open period."""
        self.send(
            self.broker.id, InvoiceQuery(), now, auth=Auth.PAIR, key=self.broker_key, corr=corr
        )

    # --- the network ---------------------------------------------------------------------------

    def message_key(self, parsed: Parsed) -> MacKey | None:
        """A vendor's chain stream has its channel's key; the broker, its own."""
        if parsed.auth is not Auth.CHAIN:
            return self.broker_message_key(parsed)
        channel = self.channels.get(parsed.header.ref)
        if channel is None or channel.vendor != parsed.header.sender:
            raise AuthenticationError
        return channel.key

    def on_message(self, parsed: Parsed, body: Body, _key: MacKey, now: float) -> list[BuyerEvent]:
        """Receipts and refusals from vendors; enrollment and answers from the broker."""
        if parsed.auth is Auth.CHAIN:
            return self._from_vendor(parsed, body, now)
        if parsed.auth is Auth.SCRIP:
            return self.on_scrip_answer(parsed, body)
        return self._from_broker(parsed, body, now)

    def on_broker_broadcast(self, topic: str, parsed: Parsed, _now: float) -> list[BuyerEvent]:
        """Revocation lists and ledger heads."""
        return list(self.broker_broadcast(topic, parsed))

    def on_offer(self, topic: str, parsed: Parsed, now: float) -> list[BuyerEvent]:
        """A vendor's offer, signed by the key of the certificate it carries."""
        header = parsed.header
        if header.type != "offer":
            raise UnexpectedMessageError(f"buyer does not read {header.type!r} broadcasts")
        offer = decode_as(Offer, header.body)
        broker = self.broker
        certificate = verify_certificate(
            offer.certificate, self.broker_keys, broker.id, now, "vendor", self.revoked
        )
        if certificate.subject != header.sender:
            raise AuthenticationError
        if (reason := weak_key_reason(certificate.sign_key, certificate.agree_key)) is not None:
            # Only a certificate issued before the broker refused such keys: under it anyone
            # could sign this vendor's offers, and no chain key can be agreed with it.
            raise CertificateError(f"vendor certificate carries a weak key: {reason}")
        verify_signed(parsed, topic, certificate.sign_key)
        if offer.valid_until < int(now * 1000):
            raise UnexpectedMessageError(f"offer of {header.sender} expired")
        known = self.offers.get(header.sender)
        if known is not None and known.timestamp >= header.timestamp:
            return []
        if known is not None and known.certificate.agree_key != certificate.agree_key:
            for channel in self.channels.values():
                if channel.vendor == header.sender:
                    channel.ended = True  # the vendor rekeyed: our chain keys are its old one's
        self.offers[header.sender] = _VendorOffer(offer, certificate, header.timestamp)
        return [OfferReceived(header.sender, offer)]

    def _from_vendor(self, parsed: Parsed, body: Body, now: float) -> list[BuyerEvent]:
        channel = self.channels[parsed.header.ref]
        match body:
            case Receipt() if body.commitment_id == channel.id:
                if body.index <= channel.acknowledged:
                    return []
                events: list[BuyerEvent] = []
                if body.index > channel.spent:
                    events.extend(wallet_behind(channel, body.index))
                channel.acknowledged = body.index
                channel.futile_rounds = 0
                if channel.state is not ChannelState.REFUSED:
                    channel.set_state(ChannelState.OPEN)
                if channel.acknowledged >= channel.spent:
                    channel.retry_due = None
                else:  # payments in flight: retransmit only once the receipts stop coming
                    channel.backoff = self.retry_initial
                    channel.retry_due = now + channel.backoff
                events.append(ReceiptReceived(channel.id, body.index, body.amount))
                return events
            case Error():
                # A refusal may be transient (a jump over a lost payment is refused until the
                # retransmission fills the gap); the timer gives up after a few futile rounds.
                channel.set_state(ChannelState.REFUSED)
                corr = parsed.header.corr
                if refused_index(corr) == channel.spent and jumped_a_gap(channel, body):
                    channel.retry_due = now  # fill the gap at once, not after the backoff
                return [*vendor_refusal(channel, body, corr)]
            case _:
                raise UnexpectedMessageError(f"buyer does not accept {parsed.header.type!r}")

    def _from_broker(self, parsed: Parsed, body: Body, now: float) -> list[BuyerEvent]:
        match body:
            case Enrolled():
                return [self.enrolled(parsed, body, now)]
            case Rekeyed():
                rekeyed = self.rekeyed(parsed, body, now)
                for channel in self.channels.values():
                    channel.ended = True  # its commitment names the revoked certificate
                return [*rekeyed]
            case Balance():
                received = self.head_from_reply(parsed, body.ledger, b"")
                return [*([received] if received else []), BalanceReceived(body)]
            case Invoice():
                return [InvoiceReceived(body)]
            case Minted() | Allowance():
                return self._from_other_scheme(parsed, body, now)
            case Error():
                self.rekey_refused(parsed.header.corr)
                refused = self.mint_refused(parsed.header.corr, body)
                if parsed.header.corr == ALLOWANCE_CORR:
                    self._release_commits(b"", None, now)  # no grant today: commits go bare
                peer = PeerError(self.broker.id, body.code, body.detail, parsed.header.corr)
                return [*refused, peer]
            case _:
                raise UnexpectedMessageError(f"buyer does not accept {parsed.header.type!r}")

    def _from_other_scheme(
        self, parsed: Parsed, body: Minted | Allowance, now: float
    ) -> list[BuyerEvent]:
        """Scrip minted (docs/SCHEMES.md 3.7) or today's allowance grant (4.2)."""
        if isinstance(body, Minted):
            return self.minted(parsed, body, now)
        received = self.head_from_reply(parsed, body.ledger, b"")
        return [*([received] if received else []), *self._granted(body.grant, now)]

    def _granted(self, signed: bytes, now: float) -> list[BuyerEvent]:
        """Keep today's grant (it must be ours and the broker's) and send the waiting commits."""
        if not signed:  # no allowance for this account: commits go bare, chains on-line
            self._release_commits(b"", None, now)
            return [AllowanceReceived(None, b"")]
        try:
            grant = verify_grant(signed, self.broker_keys, self.broker.id)
            certified = self.certified
            if certified is None or (grant.buyer, grant.serial) != (self.account, certified.serial):
                raise AllowanceError("the grant is for another buyer or certificate")
        except AllowanceError:
            self._release_commits(b"", None, now)  # a grant no vendor would take: go bare
            raise
        self._release_commits(signed, grant, now)
        return [AllowanceReceived(grant, signed)]

    def _release_commits(self, signed: bytes, grant: AllowanceGrant | None, now: float) -> None:
        for cid in self.allowance.answered(now, signed, grant):
            channel = self.channels.get(cid)
            if channel is not None and channel.state is ChannelState.COMMITTING:
                self._send_commit(channel, now)

    # --- timers --------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When an unacknowledged commit or payment is next retransmitted."""
        due = [c.retry_due for c in self.channels.values() if c.retry_due is not None]
        enrolling = self.enrollment_timer()
        if enrolling is not None:
            due.append(enrolling)
        scrip = self.scrip_timer()
        if scrip is not None:
            due.append(scrip)
        return min(due) if due else None

    def handle_timer(self, now: float) -> list[BuyerEvent]:
        """Retransmit what the vendor has not acknowledged (it answers repeats idempotently)."""
        self.resend_enrollment(now)
        for channel in self.channels.values():
            if channel.retry_due is None or channel.retry_due > now:
                continue
            if channel.state is ChannelState.REFUSED:
                channel.futile_rounds += 1
                if channel.futile_rounds > self.max_futile_rounds:
                    channel.retry_due = None
                    channel.set_state(ChannelState.ABANDONED)
                    continue
                channel.resume()
            if channel.state is ChannelState.COMMITTING:
                self._send_commit(channel, now)  # the retry is armed: only the commit goes
            self._resend_payments(channel, now)
            channel.backoff = min(channel.backoff * 2, self.retry_max)
            channel.retry_due = now + channel.backoff
        events = self.scrip_due(now)
        self.replay_guard.prune(now)
        return events
