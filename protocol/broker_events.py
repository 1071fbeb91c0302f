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


AnyBrokerEvent = (
    AccountOpened
    | CertificateIssued
    | CertificateRevoked
    | CommitmentRegistered
    | RegistrationRefused
    | PaywordsRedeemed
    | RedemptionRejected
    | CreditLimitExceeded
)
BROKER_EVENT_TYPES: Final = (
    AccountOpened,
    CertificateIssued,
    CertificateRevoked,
    CommitmentRegistered,
    RegistrationRefused,
    PaywordsRedeemed,
    RedemptionRejected,
    CreditLimitExceeded,
)
