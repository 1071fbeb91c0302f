"""The buyer's side of Millicent scrip: mint it, hold it, spend it, keep the change.

The wallet holds per serial the one live generation, and per vendor certificate and period
the customer secret the broker wrapped for it. A payment is written to the wallet before it
leaves and resent, byte for byte, until the vendor answers: a repeat is answered again,
while the same scrip with another request would be a double spend (docs/SCHEMES.md 3.8).
Scrip past its expiry is dropped, except while a payment of it is pending: the vendor may
still deposit it until the serial's deadline, so it is resent until answered or until the
deadline the buyer assumes (``expires`` plus the broker's default deposit grace).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from protocol.agent_endpoint import AgentEndpoint
from protocol.codec import decode_scrip, decode_tagged_scrip
from protocol.crypto import AgentKeys, MacKey, pair_key
from protocol.endpoint import BrokerInfo
from protocol.envelope import Auth, CounterSource, Parsed
from protocol.errors import (
    AuthenticationError,
    LocalProtocolError,
    RemoteProtocolError,
    ScripError,
    UnexpectedMessageError,
)
from protocol.events import (
    BuyerEvent,
    PeerError,
    ScripExpired,
    ScripMintOrdered,
    ScripMintRefused,
    ScripPaymentRefused,
    ScripPaymentSent,
    ScripReceived,
    ScripSettled,
)
from protocol.messages import (
    Body,
    Error,
    Minted,
    MintRequest,
    Offer,
    Scrip,
    ScripPaid,
    ScripPayment,
)
from protocol.scrip import key_ref, wrap_customer_secret
from protocol.scrip_state import DEFAULT_DEPOSIT_GRACE
from protocol.vendor_scrip import UNREACHABLE, deposit_corr, split_deposit_corr

MINT_RETRY = 2.0
"""First wait before an unanswered mint or scrip payment is sent again (s); it doubles."""
MINT_RETRY_MAX = 60.0
PENDING_GRACE_MS = int(DEFAULT_DEPOSIT_GRACE * 1000)
"""How long past ``expires`` a pending payment is kept and resent (ms): the broker takes
deposits until the serial's deadline, ``expires`` plus its deposit grace, and the buyer
assumes the default (two days); the scrip is written off as expired after that."""


@dataclass(slots=True)
class HeldScrip:
    """One serial's live generation in the wallet, and the ``ref`` of its customer secret."""

    scrip: Scrip
    tagged: bytes
    ref: bytes


@dataclass(slots=True)
class PendingScrip:
    """A payment written to the wallet and sent, until the vendor answers it."""

    held: HeldScrip
    item: str
    price: int
    retry_due: float
    backoff: float = MINT_RETRY


@dataclass(slots=True)
class MintOrder:
    """A ``scrip?`` the broker has not answered yet; resent with the same request id."""

    vendor: str
    value: int
    retry_due: float
    backoff: float = MINT_RETRY


def change_problem(spent: Scrip, price: int, change: bytes) -> str | None:
    """Why ``change`` is not the change of paying ``price`` with ``spent`` (``None``: it is).

    Change is ``spent`` with ``generation + 1`` and ``value - price``, every other field
    copied (docs/SCHEMES.md 3.5); none is due when the price takes the whole value.
    """
    left = spent.value - price
    if not change:
        return None if left == 0 else f"no change for the {left} left"
    try:
        body = decode_scrip(decode_tagged_scrip(change).body)
    except RemoteProtocolError:
        return "the change does not decode"
    expected = msgspec.structs.replace(spent, generation=spent.generation + 1, value=left)
    return None if body == expected else "the change is not the scrip spent, less the price"


def minted_problem(
    scrip: Scrip, order: MintOrder, buyer: str, currency: str | None, now_ms: int
) -> str | None:
    """Why minted scrip is not what was asked for (3.7); the tag is the vendor's to check."""
    if (scrip.vendor, scrip.value) != (order.vendor, order.value):
        return f"minted {scrip.value} at {scrip.vendor}, asked for {order.value} at {order.vendor}"
    if scrip.buyer != buyer or scrip.generation != 0:
        return "minted scrip names another buyer or is not fresh"
    if currency is not None and scrip.currency != currency:
        return f"minted scrip is in {scrip.currency}, the account in {currency}"
    if scrip.expires <= now_ms:
        return "minted scrip has already expired"
    return None


class BuyerScrip(AgentEndpoint[BuyerEvent]):
    """What a buyer does with scrip; ``BuyerCore`` adds chains and routes messages here."""

    def __init__(  # noqa: PLR0913 - identity, trust anchor, randomness, limits
        self,
        account: str,
        identity: AgentKeys,
        broker: BrokerInfo,
        *,
        random: Callable[[int], bytes] = os.urandom,
        max_message_size: int,
        max_skew: float,
        counter_source: CounterSource,
    ) -> None:
        super().__init__(
            account,
            identity,
            broker,
            max_message_size=max_message_size,
            max_skew=max_skew,
            counter_source=counter_source,
        )
        self._random = random
        self.scrip: dict[int, HeldScrip] = {}  # by serial: the live generation
        self.scrip_secrets: dict[tuple[str, bytes], bytes] = {}  # (vendor, ref) -> secret
        self.scrip_pending: dict[int, PendingScrip] = {}  # by serial
        self.mints: dict[bytes, MintOrder] = {}  # by request id

    # --- minting -------------------------------------------------------------------------------

    def mint(self, vendor: str, value: int, now: float) -> ScripMintOrdered:
        """Ask the broker for scrip worth ``value`` at ``vendor``; persist the order first.

        The broker reserves the value as it mints, so the order is written before it leaves:
        a buyer that dies before the answer asks again after a restart, with the same
        request id, and the broker answers with the same scrip (docs/SCHEMES.md 3.8).
        """
        if self.certified is None:
            raise LocalProtocolError("enroll before buying scrip")
        if type(value) is not int or value < 1:
            raise LocalProtocolError(
                f"scrip is worth a positive number of minor units, not {value}"
            )
        request = self._random(16)
        self.mints[request] = MintOrder(vendor, value, now)
        self._send_mint(request, now)
        return ScripMintOrdered(request, vendor, value, int(now * 1000))

    def restore_mint(self, request: bytes, vendor: str, value: int, now: float) -> None:
        """Reinstate a mint order the broker had not answered; ``resume_scrip`` asks again."""
        self.mints[request] = MintOrder(vendor, value, now)

    def _send_mint(self, request: bytes, now: float) -> None:
        order = self.mints[request]
        body = MintRequest(order.vendor, order.value, request)
        self.send(self.broker.id, body, now, auth=Auth.PAIR, key=self.broker_key, corr=request)
        order.retry_due = now + order.backoff
        order.backoff = min(order.backoff * 2, MINT_RETRY_MAX)

    def minted(self, parsed: Parsed, minted: Minted, now: float) -> list[BuyerEvent]:
        """The broker's scrip: check its body against the request, unwrap the secret, keep both."""
        order = self.mints.pop(minted.request, None)
        if order is None:
            return []  # a repeat of an answer already taken
        received = self.head_from_reply(parsed, minted.ledger, b"")
        scrip = decode_scrip(decode_tagged_scrip(minted.scrip).body)
        certified = self.certified
        currency = certified.currency if certified else None
        problem = minted_problem(scrip, order, self.account, currency, int(now * 1000))
        if problem is None and certified is not None and scrip.buyer_serial != certified.serial:
            problem = f"minted scrip names certificate {scrip.buyer_serial}, not ours"
        if problem is not None:
            raise ScripError(problem)
        broker = self.broker
        shared = pair_key(self.identity, self.account, broker.agree_key, broker.id)
        secret = wrap_customer_secret(
            shared, scrip.vendor, scrip.vendor_serial, scrip.period, minted.secret
        )
        kept = self._keep(scrip, minted.scrip, secret, minted.request)
        return [*([received] if received else []), kept]

    def _keep(
        self, scrip: Scrip, tagged: bytes, secret: bytes, request: bytes = b""
    ) -> ScripReceived:
        ref = key_ref(scrip.vendor_serial, scrip.period)
        self.scrip[scrip.serial] = HeldScrip(scrip, tagged, ref)
        self.scrip_secrets[scrip.vendor, ref] = secret
        return ScripReceived(
            scrip.vendor,
            scrip.serial,
            scrip.generation,
            scrip.value,
            scrip.expires,
            tagged,
            ref,
            secret,
            request,
        )

    def mint_refused(self, corr: bytes, error: Error) -> list[BuyerEvent]:
        """The broker refused a mint: asking again would be refused again."""
        if self.mints.pop(corr, None) is None:
            return []
        return [ScripMintRefused(corr, error.code, error.detail)]

    # --- paying --------------------------------------------------------------------------------

    def usable_scrip(self, vendor: str, vendor_serial: int, now: float) -> list[HeldScrip]:
        """Scrip that ``vendor`` takes now: its current certificate, unexpired, not in flight."""
        now_ms = int(now * 1000)
        return [
            held
            for serial, held in self.scrip.items()
            if held.scrip.vendor == vendor
            and held.scrip.vendor_serial == vendor_serial
            and now_ms <= held.scrip.expires
            and serial not in self.scrip_pending
        ]

    def send_scrip_payment(  # noqa: PLR0913 - the vendor's terms and the payment
        self, vendor: str, offer: Offer, vendor_serial: int, price: int, item: str, now: float
    ) -> ScripPaymentSent:
        """Spend ``price`` of the smallest scrip that covers it; persist the event, then send."""
        if not offer.scrip:
            raise LocalProtocolError(f"{vendor} does not take scrip")
        if item:
            prices = {offered.item: offered.price for offered in offer.items}
            if item not in prices:
                raise LocalProtocolError(f"{vendor} does not offer {item!r}")
            if prices[item] != price:
                raise LocalProtocolError(f"{item!r} costs {prices[item]} at {vendor}, not {price}")
        usable = [
            h for h in self.usable_scrip(vendor, vendor_serial, now) if h.scrip.value >= price
        ]
        if not usable:
            raise LocalProtocolError(f"no scrip for {vendor} worth {price}: mint some first")
        held = min(usable, key=lambda h: (h.scrip.value, h.scrip.expires))
        scrip = held.scrip
        pending = PendingScrip(held, item, price, now)
        self.scrip_pending[scrip.serial] = pending
        self._send_scrip_payment(pending, now)
        return ScripPaymentSent(vendor, scrip.serial, scrip.generation, item, price)

    def _send_scrip_payment(self, pending: PendingScrip, now: float) -> None:
        held = pending.held
        scrip = held.scrip
        self.send(
            scrip.vendor,
            ScripPayment(held.tagged, pending.item, pending.price),
            now,
            auth=Auth.SCRIP,
            key=MacKey(self.scrip_secrets[scrip.vendor, held.ref]),
            ref=held.ref,
            corr=deposit_corr(scrip.serial, scrip.generation),
        )
        pending.retry_due = now + pending.backoff
        pending.backoff = min(pending.backoff * 2, MINT_RETRY_MAX)

    def resume_scrip(self, now: float) -> int:
        """Resend every mint order and payment the wallet holds as pending (after a restart)."""
        for order in self.mints.values():
            order.backoff = MINT_RETRY
        for request in self.mints:
            self._send_mint(request, now)
        for pending in self.scrip_pending.values():
            pending.backoff = MINT_RETRY
            self._send_scrip_payment(pending, now)
        return len(self.mints) + len(self.scrip_pending)

    # --- the vendor's answers ------------------------------------------------------------------

    def scrip_message_key(self, parsed: Parsed) -> MacKey:
        """The secret of ``ref`` for the vendor that sent it; a buyer holding none: ``auth``."""
        secret = self.scrip_secrets.get((parsed.header.sender, parsed.header.ref))
        if secret is None:
            raise AuthenticationError
        return MacKey(secret)

    def on_scrip_answer(self, parsed: Parsed, body: Body) -> list[BuyerEvent]:
        """``scrip-paid`` or a refusal, for the payment pending on that serial."""
        sender = parsed.header.sender
        match body:
            case ScripPaid():
                return self._paid(sender, body)
            case Error():
                return self._refused(sender, parsed.header.corr, body)
            case _:
                raise UnexpectedMessageError(f"buyer does not accept {parsed.header.type!r}")

    def _pending(self, vendor: str, serial: int, generation: int) -> PendingScrip | None:
        pending = self.scrip_pending.get(serial)
        if pending is None:
            return None
        scrip = pending.held.scrip
        return pending if (scrip.vendor, scrip.generation) == (vendor, generation) else None

    def _paid(self, vendor: str, paid: ScripPaid) -> list[BuyerEvent]:
        pending = self._pending(vendor, paid.serial, paid.generation)
        if pending is None:
            return []  # an answer to a payment already settled
        if paid.price != pending.price:
            raise UnexpectedMessageError(
                f"{vendor} took {paid.price}, the payment was {pending.price}"
            )
        spent = pending.held.scrip
        del self.scrip_pending[spent.serial]
        del self.scrip[spent.serial]
        problem = change_problem(spent, paid.price, paid.change)
        left = 0 if problem is not None else spent.value - paid.price
        events: list[BuyerEvent] = [
            ScripSettled(vendor, spent.serial, spent.generation, paid.price, left, problem or "")
        ]
        if problem is None and paid.change:
            secret = self.scrip_secrets[vendor, pending.held.ref]
            change = decode_scrip(decode_tagged_scrip(paid.change).body)
            events.append(self._keep(change, paid.change, secret))
        return events

    def _refused(self, vendor: str, corr: bytes, error: Error) -> list[BuyerEvent]:
        events: list[BuyerEvent] = [PeerError(vendor, error.code, error.detail, corr)]
        serial, generation = split_deposit_corr(corr)
        pending = self._pending(vendor, serial, generation)
        if pending is None or error.detail == UNREACHABLE:
            return events  # the timer resends it: the broker may answer the vendor later
        del self.scrip_pending[serial]
        lost = error.code == "scrip" and error.detail in ("spent", "scrip expired")
        if lost:
            del self.scrip[serial]
        events.append(
            ScripPaymentRefused(vendor, serial, generation, error.code, error.detail, lost)
        )
        return events

    # --- restore, timers -----------------------------------------------------------------------

    def restore_scrip(self, tagged: bytes, secret: bytes) -> HeldScrip:
        """Reinstate scrip and its customer secret from the wallet."""
        scrip = decode_scrip(decode_tagged_scrip(tagged).body)
        self._keep(scrip, tagged, secret)
        return self.scrip[scrip.serial]

    def restore_scrip_payment(self, serial: int, item: str, price: int, now: float) -> None:
        """Reinstate a payment that was written but not answered; ``resume_scrip`` resends it."""
        self.scrip_pending[serial] = PendingScrip(self.scrip[serial], item, price, now)

    def scrip_timer(self) -> float | None:
        """The next resend of a mint or payment, or the next expiry of held scrip."""
        due = [o.retry_due for o in self.mints.values()]
        due.extend(p.retry_due for p in self.scrip_pending.values())
        due.extend((self._kept_until(s, h) + 1) / 1000 for s, h in self.scrip.items())
        return min(due) if due else None

    def _kept_until(self, serial: int, held: HeldScrip) -> int:
        """When held scrip is dropped (ms): at expiry, or at the deadline while it is pending."""
        expires = held.scrip.expires
        return expires + PENDING_GRACE_MS if serial in self.scrip_pending else expires

    def scrip_due(self, now: float) -> list[BuyerEvent]:
        """Resend what is unanswered; drop scrip past its expiry (the broker returns its value).

        Scrip with a payment pending is kept past its expiry, and the payment resent, until
        the deadline: the vendor may have recorded it (off-line) or may still deposit it
        (on-line), and answers its identical repeat even after the expiry (3.8).
        """
        for request, order in self.mints.items():
            if order.retry_due <= now:
                self._send_mint(request, now)
        now_ms = int(now * 1000)
        events: list[BuyerEvent] = []
        for serial, held in list(self.scrip.items()):
            if self._kept_until(serial, held) < now_ms:
                del self.scrip[serial]
                self.scrip_pending.pop(serial, None)
                events.append(ScripExpired(held.scrip.vendor, serial, held.scrip.value))
        for pending in self.scrip_pending.values():
            if pending.retry_due <= now:
                self._send_scrip_payment(pending, now)
        return events
