"""One log line per broker decision about money or identity, written once it is durable.

Operators grep and alert on these: who was enrolled or revoked, which commitment was
registered or refused, what was credited to whom, when a buyer passed its limit. Each
line names the accounts, the commitment (its first 16 hex digits, as ``broker dispute``
accepts) and the amounts, and ends with the ledger sequence number that holds the event.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from protocol.broker_events import (
    AccountOpened,
    AnyBrokerEvent,
    CertificateIssued,
    CertificateRevoked,
    CommitmentRegistered,
    CreditLimitExceeded,
    DepositRejected,
    PaywordsRedeemed,
    RedemptionRejected,
    RegistrationRefused,
    ReservationReleased,
    ScripDeposited,
    ScripMinted,
    ScripReturned,
    SettlementRecorded,
)
from protocol.codec import decode_commitment, decode_signed
from protocol.credentials import commitment_id
from protocol.errors import MicropayError

log = logging.getLogger("micropay.broker")


def short(cid: bytes) -> str:
    """A commitment id as operators type it."""
    return cid.hex()[:16]


def describe(event: AnyBrokerEvent) -> tuple[int, str] | None:  # noqa: C901, PLR0911 - one arm a kind
    """The level and text of an event's line, or ``None`` for events with no decision."""
    match event:
        case AccountOpened():
            return logging.INFO, (
                f"account opened: {event.account} role={event.role}"
                f" credit_limit={event.credit_limit} currency={event.currency}"
            )
        case CertificateIssued():
            return logging.INFO, f"enrolled: {event.account} certificate={event.serial}"
        case CertificateRevoked():
            return logging.WARNING, (
                f"revoked: {event.account} certificate={event.serial} reason={event.reason!r}"
            )
        case CommitmentRegistered():
            return logging.INFO, (
                f"commitment registered: {short(event.commitment_id)} buyer={event.buyer}"
                f" vendor={event.vendor} length={event.length} unit_value={event.unit_value}"
                f" reserved={event.reserved}"
            )
        case RegistrationRefused():
            return logging.INFO, (
                f"registration refused: {short(event.commitment_id)} buyer={event.buyer}"
                f" vendor={event.vendor} reason={event.reason!r}"
            )
        case PaywordsRedeemed():
            return logging.INFO, (
                f"redeemed: {short(event.commitment_id)} vendor={event.vendor}"
                f" buyer={event.buyer} units={event.units} amount={event.amount}"
                f" index={event.from_index}..{event.index}"
            )
        case RedemptionRejected():
            return logging.WARNING, (
                f"redemption refused: {_commitment(event.commitment)} vendor={event.vendor}"
                f" index={event.index} reason={event.reason!r}"
            )
        case CreditLimitExceeded():
            return logging.WARNING, (
                f"credit limit exceeded: buyer={event.buyer} exposure={event.exposure}"
                f" limit={event.limit}"
            )
        case ReservationReleased():
            return logging.INFO, (
                f"reservation released: {short(event.commitment_id)} buyer={event.buyer}"
                f" amount={event.amount}"
            )
        case SettlementRecorded():
            return logging.INFO, (
                f"settlement recorded: {event.account} amount={event.amount}"
                f" reference={event.reference!r}"
            )
        case ScripMinted() | ScripDeposited() | ScripReturned() | DepositRejected():
            return describe_scrip(event)
        case _:
            return None


def describe_scrip(
    event: ScripMinted | ScripDeposited | ScripReturned | DepositRejected,
) -> tuple[int, str]:
    """The line of a scrip decision (docs/SCHEMES.md 3.8)."""
    match event:
        case ScripMinted():
            return logging.INFO, (
                f"scrip minted: serial={event.serial} buyer={event.buyer} vendor={event.vendor}"
                f" value={event.value} expires={event.expires}"
            )
        case ScripDeposited():
            return logging.INFO, (
                f"scrip deposited: serial={event.serial} vendor={event.vendor}"
                f" buyer={event.buyer} generation={event.generation} credit={event.credit}"
                f" outstanding={event.outstanding}"
            )
        case ScripReturned():
            return logging.INFO, (
                f"scrip returned: serial={event.serial} buyer={event.buyer} amount={event.amount}"
            )
        case DepositRejected():
            return logging.WARNING, (
                f"deposit refused: vendor={event.vendor} reason={event.reason!r}"
            )


def log_decisions(decisions: Iterable[tuple[int, AnyBrokerEvent]]) -> None:
    """Log each (ledger seq, event) that records a decision."""
    for seq, event in decisions:
        line = describe(event)
        if line is not None:
            level, text = line
            log.log(level, "%s seq=%d", text, seq)


def _commitment(signed: bytes) -> str:
    """The id of a commitment a refused redemption named (it may not even decode)."""
    try:
        body = decode_signed(signed).body
        decode_commitment(body)
    except MicropayError:
        return "(undecodable commitment)"
    return short(commitment_id(body))
