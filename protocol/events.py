"""What the cores tell their shells. Small frozen records, no behaviour.

A shell must persist the events a call returned *before* it publishes what
``data_to_send()`` yields afterwards: that ordering is what makes every acknowledgement
durable.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import RemoteProtocolError
from protocol.messages import Balance, Invoice, Offer


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT publish the shell must make."""

    topic: str
    payload: bytes
    retain: bool = False


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
    """Persist ``index`` before publishing: a crash then loses at most this payword."""

    commitment_id: bytes
    index: int


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
class RevocationsUpdated:
    """A newer signed revocation list arrived."""

    sequence: int
    serials: frozenset[int]


@dataclass(frozen=True, slots=True)
class LedgerHeadWitnessed:
    """The broker signed its ledger head; ``envelope`` is the proof to keep (with ``topic``).

    ``regressed`` is set when ``seq`` is below one already witnessed: a broker whose ledger
    went backwards lost or dropped events it had already vouched for.
    """

    seq: int
    head: bytes
    at: int
    topic: str
    envelope: bytes
    regressed: bool


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
class RedemptionConfirmed:
    """The broker credited the chain up to ``index`` (``amount`` in total)."""

    commitment_id: bytes
    index: int
    amount: int
