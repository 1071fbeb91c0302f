"""What the cores tell their shells. Small frozen records, no behaviour.

A shell must persist the events a call returned *before* it publishes what
``data_to_send()`` yields afterwards: that ordering is what makes every acknowledgement
durable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from protocol.broker_events import AnyBrokerEvent
from protocol.errors import RemoteProtocolError
from protocol.ledger_heads import HeadVerdict
from protocol.messages import AllowanceGrant, Balance, Invoice, Offer, SignedHead


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT publish the shell must make."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class HeldReply:
    """A reply that must carry the signed ledger head that made its events durable.

    The broker's core holds such replies (redemption receipts, on-line verdicts, balances)
    until its shell has committed the batch: ``sealed`` then puts the head in and seals
    the envelope, timestamped at that moment.
    """

    topic: str
    seal: Callable[[SignedHead | None, float], bytes]

    def sealed(self, head: SignedHead | None, now: float) -> Outgoing:
        """The envelope to publish, carrying ``head``."""
        return Outgoing(self.topic, self.seal(head, now))


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A message was refused; log it and carry on. ``sender`` is unauthenticated."""

    topic: str
    sender: str
    error: RemoteProtocolError


@dataclass(frozen=True, slots=True)
class PeerError:
    """An authenticated peer refused one of our requests."""

    peer: str
    code: str
    detail: str
    corr: bytes


# --- buyer -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertificateReceived:
    """Enrollment finished: our certificate (``Signed`` bytes)."""

    certificate: bytes
    serial: int


@dataclass(frozen=True, slots=True)
class OfferReceived:
    """A vendor's verified offer."""

    vendor: str
    offer: Offer


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    """A commitment was signed; persist the seed before the commit is sent."""

    commitment_id: bytes
    vendor: str
    seed: bytes
    commitment: bytes
    length: int


@dataclass(frozen=True, slots=True)
class PaywordSpent:
    """A payment up to ``index``; ``reserved``, when set, is what to persist before publishing.

    The wallet keeps one number per chain, "spent up to ``reserved``", and the core reveals
    no payword above it. A payment within it needs no write (``reserved`` is ``None``); one
    that goes past it first extends it, and this event carries the new value.
    """

    commitment_id: bytes
    index: int
    reserved: int | None = None


@dataclass(frozen=True, slots=True)
class SpendReserved:
    """Persist ``upto`` as the chain's spend reservation, even though it is lower than before.

    A paying session that ends hands back what it reserved and did not pay: nothing above
    ``upto`` has left, so those units stay payable, and what the wallet says it paid is
    exact again.
    """

    commitment_id: bytes
    upto: int


@dataclass(frozen=True, slots=True)
class PaymentRefused:
    """The vendor refused the newest payment on a chain: final, not a stale retransmission.

    Its ``PeerError`` comes with it; a refusal of an older step (a retransmission below
    what the vendor holds) is only a ``PeerError``, since a later receipt settles it.
    """

    commitment_id: bytes
    vendor: str
    index: int
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class ReceiptReceived:
    """The vendor confirms everything up to ``index`` on a chain."""

    commitment_id: bytes
    index: int
    amount: int


@dataclass(frozen=True, slots=True)
class BalanceReceived:
    """The broker's answer to a balance query."""

    balance: Balance


@dataclass(frozen=True, slots=True)
class InvoiceReceived:
    """The broker's answer to an invoice query."""

    invoice: Invoice


@dataclass(frozen=True, slots=True)
class AllowanceReceived:
    """The broker's daily grant (checked), attached to commits for vendors that take it.

    ``grant`` is ``None`` (``signed`` empty) for an account without an allowance.
    """

    grant: AllowanceGrant | None
    signed: bytes


@dataclass(frozen=True, slots=True)
class RevocationsUpdated:
    """A newer signed revocation list arrived."""

    sequence: int
    serials: frozenset[int]


@dataclass(frozen=True, slots=True)
class LedgerHeadWitnessed:
    """The broker's retained ledger-head broadcast; ``envelope`` is the proof (with ``topic``).

    ``verdict`` compares it with the heads this agent holds (``protocol.ledger_heads``):
    keep ``new`` ones; ``contradiction`` and ``regression`` are evidence against the
    broker (keep them, and alarm); ``seen`` and ``stale`` are old news.
    """

    seq: int
    head: bytes
    at: int
    topic: str
    envelope: bytes
    verdict: HeadVerdict

    @property
    def regressed(self) -> bool:
        """The broker signed this head after a higher one: its ledger went backwards."""
        return self.verdict == "regression"


@dataclass(frozen=True, slots=True)
class HeadReceived:
    """A signed ledger head that rode on a money reply from the broker.

    ``scope`` is the commitment the reply was about (``b""`` for a balance), ``at`` the
    reply's timestamp. The agent keeps the latest per commitment and the latest overall.
    """

    scope: bytes
    signed: SignedHead
    at: int
    verdict: HeadVerdict


@dataclass(frozen=True, slots=True)
class PublishedHeadSeen:
    """The broker read back a ledger head it signed and published (retained) earlier.

    A head above the ledger it now runs on means the ledger was restored from an older
    copy or cut: the shell says so at ERROR.
    """

    seq: int
    head: bytes
    at: int


@dataclass(frozen=True, slots=True)
class StateBehind:
    """Someone's money state is older than what was signed or told: a restore, or worse.

    ``whose`` is ``"ours"`` when this agent's own store is older than what the broker (or
    a vendor) recorded, ``"broker's"`` when the broker's ledger lost what this agent holds
    receipts for. Log at ERROR; the core has already done what it can (re-sent its
    evidence, refused to serve paid paywords twice).
    """

    whose: Literal["ours", "broker's"]
    detail: str


@dataclass(frozen=True, slots=True)
class BrokerKeyAccepted:
    """The broker rotated its signing key, and the new key chains from the one we trust.

    ``history`` is every rotation statement held, encoded (``codec.encode_rotations``):
    the shell keeps it, so that a restart trusts the new key without reconfiguration.
    """

    sign_key: bytes
    generation: int
    history: bytes


@dataclass(frozen=True, slots=True)
class KeysRekeyed:
    """The broker certified this agent's new keys; the old certificate is revoked.

    Persist the certificate, then make the new keys the agent's own (the shell's files).
    """

    certificate: bytes
    serial: int
    old_serial: int


# --- vendor ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitmentAccepted:
    """A chain is open for payments; persist the commitment before the acceptance goes out."""

    commitment_id: bytes
    buyer: str
    commitment: bytes
    root: bytes


@dataclass(frozen=True, slots=True)
class PaymentAccepted:
    """Persist before the receipt or the service: the vendor now holds ``payword``."""

    commitment_id: bytes
    buyer: str
    index: int
    payword: bytes
    units: int
    amount: int
    item: str


@dataclass(frozen=True, slots=True)
class AllowanceCounted:
    """A chain accepted by a vendor that takes grants: its day, and what it counted.

    ``amount`` is the chain's value when it was accepted off-line under the buyer's grant,
    0 when the broker registered it; persist it with the chain (``today(buyer)``).
    """

    commitment_id: bytes
    buyer: str
    day: int
    amount: int


@dataclass(frozen=True, slots=True)
class RedemptionConfirmed:
    """The broker credited the chain up to ``index`` (``amount`` in total)."""

    commitment_id: bytes
    index: int
    amount: int


@dataclass(frozen=True, slots=True)
class ScripAccepted:
    """A scrip payment passed rules 1-9: persist the record before the service and the reply.

    This event *is* the service: the shell delivers ``item`` (and counts the payment) on it,
    and the core emits it exactly once per payment (docs/SCHEMES.md 3.9). A repeat of a
    payment is answered again without it (``ScripRepeatAnswered`` on-line).

    The record replaces the serial's (docs/SCHEMES.md 3.8): ``spent`` and ``change`` are the
    exact bytes, so a repeat gets the same answer and a deposit the same change. ``confirmed``
    is the generation the broker already credited (an on-line vendor served after its
    ``deposited``), else -1.
    """

    serial: int
    generation: int
    buyer: str
    item: str
    price: int
    spent: bytes
    change: bytes
    expires: int
    confirmed: int = -1


@dataclass(frozen=True, slots=True)
class ScripDepositConfirmed:
    """The broker credited a serial up to ``generation`` (``credited`` on it in all).

    ``change`` is the change it recorded with that generation; when the generation is above
    the one this vendor holds (a store restored from a backup), the record adopts it, so the
    generation is never accepted again.
    """

    serial: int
    generation: int
    credited: int
    change: bytes


@dataclass(frozen=True, slots=True)
class ScripRepeatAnswered:
    """On-line: the broker had credited this payment already (``deposited`` with ``repeat``).

    The buyer got the recorded change again, and nothing was served: another process of
    this vendor (a replica), or this one before a restart, was answered first and served it
    (docs/SCHEMES.md 3.9). Nothing to persist; the shell may log it.
    """

    serial: int
    generation: int
    buyer: str
    item: str


@dataclass(frozen=True, slots=True)
class ScripDepositRefused:
    """The broker refused the deposit of this record for good (an ``Error`` ``deposit``).

    The record is no longer deposited; the shell keeps a copy for the operator (the
    store's ``scrip_refused``) and warns. ``at`` is the vendor's clock, in ms.
    """

    serial: int
    generation: int
    detail: str
    at: int


@dataclass(frozen=True, slots=True)
class ScripForgotten:
    """A serial's deadline passed: its record leaves the spent set (nothing can spend it)."""

    serial: int


# --- buyer: scrip ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScripReceived:
    """Scrip the wallet now holds (minted, or change): persist it and its secret, sealed.

    ``scrip`` is the ``TaggedScrip`` bytes, ``secret`` the customer secret of ``ref`` (the
    vendor certificate and period) unwrapped: together they are money. ``request`` is the
    mint order it answers (its row goes with it), empty for change.
    """

    vendor: str
    serial: int
    generation: int
    value: int
    expires: int
    scrip: bytes
    ref: bytes
    secret: bytes
    request: bytes = b""


@dataclass(frozen=True, slots=True)
class ScripMintOrdered:
    """Persist before the ``scrip?`` leaves: it is asked again until answered.

    After a restart too, with the same request id, which the broker answers with the same
    scrip (it reserved the value once).
    """

    request: bytes
    vendor: str
    value: int
    at: int
    """When it was first asked (ms): an order older than any scrip's life is dropped."""


@dataclass(frozen=True, slots=True)
class ScripMintRefused:
    """The broker refused a mint order: it is not asked again (its row goes)."""

    request: bytes
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class ScripPaymentSent:
    """Persist before the ``scrip-pay`` leaves: until answered, exactly it is resent."""

    vendor: str
    serial: int
    generation: int
    item: str
    price: int


@dataclass(frozen=True, slots=True)
class ScripSettled:
    """The vendor took ``price`` of the serial's generation; change, if any, follows.

    ``change_refused`` says why change the vendor sent was not kept (its body does not
    follow from the scrip spent), empty when it was.
    """

    vendor: str
    serial: int
    generation: int
    price: int
    change_value: int
    change_refused: str = ""


@dataclass(frozen=True, slots=True)
class ScripPaymentRefused:
    """The vendor refused the pending payment; ``lost``: the scrip is no good there any more."""

    vendor: str
    serial: int
    generation: int
    code: str
    detail: str
    lost: bool


@dataclass(frozen=True, slots=True)
class ScripExpired:
    """Scrip dropped past ``expires`` (with a payment pending: two days later); see 3.8."""

    vendor: str
    serial: int
    value: int


# --- what each role's core returns ----------------------------------------------------------

BuyerEvent = (
    CertificateReceived
    | BrokerKeyAccepted
    | KeysRekeyed
    | ChannelOpened
    | HeadReceived
    | StateBehind
    | PaywordSpent
    | SpendReserved
    | PaymentRefused
    | OfferReceived
    | ReceiptReceived
    | ScripReceived
    | ScripMintOrdered
    | ScripMintRefused
    | ScripPaymentSent
    | ScripSettled
    | ScripPaymentRefused
    | ScripExpired
    | BalanceReceived
    | InvoiceReceived
    | AllowanceReceived
    | RevocationsUpdated
    | LedgerHeadWitnessed
    | MessageRejected
    | PeerError
)

VendorEvent = (
    CertificateReceived
    | BrokerKeyAccepted
    | KeysRekeyed
    | CommitmentAccepted
    | AllowanceCounted
    | HeadReceived
    | StateBehind
    | PaymentAccepted
    | RedemptionConfirmed
    | ScripAccepted
    | ScripDepositConfirmed
    | ScripDepositRefused
    | ScripRepeatAnswered
    | ScripForgotten
    | RevocationsUpdated
    | LedgerHeadWitnessed
    | MessageRejected
    | PeerError
)

BrokerCoreEvent = AnyBrokerEvent | PublishedHeadSeen | MessageRejected
"""The broker's ledger events (persist them) and what its shell only logs or reacts to."""
