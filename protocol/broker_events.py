"""The broker's domain events: the only way broker state changes, live or replayed.

These are what the ledger stores. They are msgspec structs with explicit tags (the tag,
not the class name, is the stored format) and carry the evidence an auditor needs to
re-verify each money movement without trusting the broker's database.
"""

from __future__ import annotations

from typing import Final

import msgspec

from protocol.messages import Role


class BrokerEvent(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    """Base of all broker events; ``at`` is milliseconds since the epoch."""

    at: int


class AccountOpened(BrokerEvent, frozen=True, tag="account-opened"):
    """The operator opened an account; ``token_nonce`` re-derives its enrollment token."""

    account: str
    role: Role
    credit_limit: int
    currency: str
    token_nonce: bytes


class CertificateIssued(BrokerEvent, frozen=True, tag="certificate-issued"):
    """The broker certified an account's keys."""

    account: str
    serial: int
    certificate: bytes


class CertificateRevoked(BrokerEvent, frozen=True, tag="certificate-revoked"):
    """A certificate is on the revocation list from now on."""

    account: str
    serial: int
    reason: str


class CommitmentRegistered(BrokerEvent, frozen=True, tag="commitment-registered"):
    """First sight of a commitment (on-line registration or first redemption)."""

    commitment_id: bytes
    buyer: str
    vendor: str
    commitment: bytes
    length: int
    unit_value: int
    reserved: int


class ReservationReleased(BrokerEvent, frozen=True, tag="reservation-released"):
    """On-line mode: a commitment is past its redemption deadline with credit still held.

    Nothing can be redeemed on it any more, so what was reserved for it returns to the
    buyer's available credit.
    """

    commitment_id: bytes
    buyer: str
    amount: int


class RegistrationRefused(BrokerEvent, frozen=True, tag="registration-refused"):
    """On-line mode: the broker refused a commitment (credit limit, revocation)."""

    commitment_id: bytes
    buyer: str
    vendor: str
    reason: str


class PaywordsRedeemed(BrokerEvent, frozen=True, tag="paywords-redeemed"):
    """A vendor was credited (and its buyer debited) for ``index - from_index`` units."""

    commitment_id: bytes
    buyer: str
    vendor: str
    commitment: bytes
    from_index: int
    index: int
    payword: bytes
    units: int
    amount: int


class RedemptionRejected(BrokerEvent, frozen=True, tag="redemption-rejected"):
    """A redemption that credited nothing, with the reason and the evidence presented."""

    vendor: str
    reason: str
    commitment: bytes
    index: int
    payword: bytes


class CreditLimitExceeded(BrokerEvent, frozen=True, tag="credit-limit-exceeded"):
    """A buyer's debits passed its credit limit (the vendor is still paid)."""

    buyer: str
    exposure: int
    limit: int


class BillingLine(msgspec.Struct, frozen=True, array_like=True):
    """One counterparty's share of an invoice or statement."""

    counterparty: str
    units: int
    amount: int


class InvoiceIssued(BrokerEvent, frozen=True, tag="invoice-issued"):
    """A buyer's invoice for one billing period: one line per vendor."""

    period: str
    buyer: str
    currency: str
    lines: list[BillingLine]
    total: int


class StatementIssued(BrokerEvent, frozen=True, tag="statement-issued"):
    """A vendor's statement for one billing period: gross, the broker's fee, net."""

    period: str
    vendor: str
    currency: str
    lines: list[BillingLine]
    gross: int
    fee: int
    net: int


class PeriodClosed(BrokerEvent, frozen=True, tag="period-closed"):
    """A billing period covers ledger events ``after_sequence < seq <= through_sequence``."""

    period: str
    after_sequence: int
    through_sequence: int
    fee_basis_points: int
    debited: int
    credited: int
    fees: int


class BrokerKeyRotated(BrokerEvent, frozen=True, tag="broker-key-rotated"):
    """The broker's signing key changed: ``rotation`` is the statement both keys signed.

    Its commit, and every one after it, is signed by ``new_sign_key``; ``from_seq`` is
    this event's own sequence number.
    """

    broker: str
    sequence: int
    old_sign_key: bytes
    new_sign_key: bytes
    from_seq: int
    rotation: bytes


class CertificateRekeyed(BrokerEvent, frozen=True, tag="certificate-rekeyed"):
    """An account's new keys were certified on the authority of its current certificate.

    ``request`` is the agent's ``RekeyRequest`` (its old key's authorization and its new
    key's proof); the old serial is revoked in the same transaction.
    """

    account: str
    old_serial: int
    serial: int
    certificate: bytes
    request: bytes


class SettlementRecorded(BrokerEvent, frozen=True, tag="settlement-recorded"):
    """Money moved outside the system: a buyer paid an invoice or a vendor was paid out."""

    account: str
    amount: int
    reference: str


class ScripMinted(BrokerEvent, frozen=True, tag="scrip-minted"):
    """The broker minted scrip for ``buyer`` at ``vendor``; ``value`` is reserved from now on.

    ``scrip`` is the ``TaggedScrip`` bytes sent; ``request`` the buyer's request id, so a
    repeated request gets the same answer. ``nonce`` is the scrip's own (the broker credits
    only scrip that carries it), kept in clear as the bytes in ``scrip`` keep it anyway.
    """

    buyer: str
    buyer_serial: int
    vendor: str
    vendor_serial: int
    serial: int
    period: int
    value: int
    currency: str
    expires: int
    properties: list[str]
    request: bytes
    scrip: bytes
    deadline: int
    """``expires`` plus the broker's deposit grace (ms): deposits until then, the return at it."""
    max_value: int
    """The largest mint in force when this one was made, so the audit needs no policy."""
    nonce: bytes


class ScripDeposited(BrokerEvent, frozen=True, tag="scrip-deposited"):
    """A vendor deposited spent scrip: ``credit`` moves from the buyer to the vendor.

    ``spent`` is the highest generation the vendor accepted, ``change`` what it returned
    (empty when used up), ``outstanding`` the value still unspent on the serial after it.
    ``claim`` is the deposit's (an on-line vendor's per-payment random bytes; empty
    off-line and in events from before it): the same claim again is that vendor process's
    own retry, not a repeat (docs/SCHEMES.md 3.9).
    """

    vendor: str
    buyer: str
    serial: int
    generation: int
    spent: bytes
    item: str
    price: int
    change: bytes
    credit: int
    outstanding: int
    claim: bytes = b""


class ScripReturned(BrokerEvent, frozen=True, tag="scrip-returned"):
    """A serial passed its deadline: what was still outstanding returns to the buyer."""

    buyer: str
    vendor: str
    serial: int
    amount: int


class DepositRejected(BrokerEvent, frozen=True, tag="deposit-rejected"):
    """A deposit that credited nothing, with the reason and the ``Deposit`` bytes presented.

    Only a claim on a serial minted for the vendor, in the scrip as minted, is recorded
    (late, a generation claimed twice, arithmetic or change that does not add up), at most
    ``MAX_DEPOSIT_REJECTIONS`` per ``serial``; ``serial`` is 0 in events from before that.
    """

    vendor: str
    reason: str
    deposit: bytes
    serial: int = 0


class AllowanceGranted(BrokerEvent, frozen=True, tag="allowance-granted"):
    """The broker granted ``buyer`` an off-line allowance for ``day``; ``reserved`` is held.

    ``grant`` is the ``Signed`` bytes of the ``AllowanceGrant``; ``reserved`` is
    ``allowance_vendors * amount`` (docs/SCHEMES.md 4.4).
    """

    buyer: str
    serial: int
    day: int
    amount: int
    reserved: int
    grant: bytes


class AllowanceReleased(BrokerEvent, frozen=True, tag="allowance-released"):
    """The day of a grant ended: its reservation returns to the buyer's available credit."""

    buyer: str
    day: int
    amount: int


class AllowanceSet(BrokerEvent, frozen=True, tag="allowance-set"):
    """The operator set a buyer's daily off-line allowance (0: none, every chain on-line).

    It is the most each vendor may accept off-line from the buyer in one day; a grant gives
    less as the buyer's debits approach its limit (docs/SCHEMES.md 4.4).
    """

    account: str
    amount: int


AnyBrokerEvent = (
    AccountOpened
    | CertificateIssued
    | CertificateRevoked
    | CommitmentRegistered
    | RegistrationRefused
    | ReservationReleased
    | PaywordsRedeemed
    | RedemptionRejected
    | CreditLimitExceeded
    | InvoiceIssued
    | StatementIssued
    | PeriodClosed
    | SettlementRecorded
    | BrokerKeyRotated
    | CertificateRekeyed
    | ScripMinted
    | ScripDeposited
    | ScripReturned
    | DepositRejected
    | AllowanceGranted
    | AllowanceReleased
    | AllowanceSet
)
BROKER_EVENT_TYPES: Final = (
    AccountOpened,
    CertificateIssued,
    CertificateRevoked,
    CommitmentRegistered,
    RegistrationRefused,
    ReservationReleased,
    PaywordsRedeemed,
    RedemptionRejected,
    CreditLimitExceeded,
    InvoiceIssued,
    StatementIssued,
    PeriodClosed,
    SettlementRecorded,
    BrokerKeyRotated,
    CertificateRekeyed,
    ScripMinted,
    ScripDeposited,
    ScripReturned,
    DepositRejected,
    AllowanceGranted,
    AllowanceReleased,
    AllowanceSet,
)


def stream_of(event: AnyBrokerEvent) -> str:  # noqa: PLR0911 - one return per kind of stream
    """The stream an event belongs to: its account, its commitment or its billing period."""
    match event:
        case (
            AccountOpened()
            | CertificateIssued()
            | CertificateRevoked()
            | SettlementRecorded()
            | CertificateRekeyed()
            | AllowanceSet()
        ):
            return f"account:{event.account}"
        case BrokerKeyRotated():
            return f"keys:{event.broker}"
        case CreditLimitExceeded():
            return f"account:{event.buyer}"
        case (
            CommitmentRegistered()
            | RegistrationRefused()
            | ReservationReleased()
            | PaywordsRedeemed()
        ):
            return f"commitment:{event.commitment_id.hex()}"
        case RedemptionRejected() | DepositRejected():
            return f"rejections:{event.vendor}"
        case ScripMinted() | ScripDeposited() | ScripReturned():
            return f"scrip:{event.serial}"
        case AllowanceGranted() | AllowanceReleased():
            return f"account:{event.buyer}"
        case InvoiceIssued() | StatementIssued() | PeriodClosed():
            return f"period:{event.period}"
