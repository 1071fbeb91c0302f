"""Evidence checks on the events: their hash links, their bodies, the streams they sit in.

The events a bundle quotes must be the ledger's own rows, each about this commitment,
with the commitment's stream complete from its registration on.
"""

from __future__ import annotations

from broker_ledger.codec import EventCodec, EventDecodeError
from broker_ledger.evidence import decoded_view, presents
from broker_ledger.evidence_bundle import EventItem, Evidence
from broker_ledger.evidence_report import EvidenceReport
from broker_ledger.format import GENESIS, link_hash
from protocol.broker_events import (
    AnyBrokerEvent,
    CommitmentRegistered,
    InvoiceIssued,
    PaywordsRedeemed,
    PeriodClosed,
    RedemptionRejected,
    RegistrationRefused,
    ReservationReleased,
    StatementIssued,
    stream_of,
)


def check_links(report: EvidenceReport, evidence: Evidence) -> None:
    """Every event's link hash recomputes, in sequence order, up to the signed head."""
    report.start("event-links")
    head_seq, head_hash = evidence.head
    last: EventItem | None = None
    for item in evidence.events:
        row = item.row
        if last is not None and row.seq <= last.row.seq:
            report.fail("event-links", f"event {row.seq} is out of sequence order")
        if not 1 <= row.seq <= head_seq:
            report.fail("event-links", f"event {row.seq} lies outside the ledger (head {head_seq})")
        if row.seq == 1 and item.previous != GENESIS:
            report.fail("event-links", "event 1 does not start from the genesis hash")
        recomputed = link_hash(
            item.previous, row.seq, row.stream, row.version, row.type, row.schema, row.at, row.body
        )
        if recomputed != row.hash:
            report.fail(
                "event-links",
                f"event {row.seq}: its link hash does not recompute from the previous hash"
                " and its columns",
            )
        if last is not None and last.row.seq == row.seq - 1 and item.previous != last.row.hash:
            report.fail(
                "event-links", f"event {row.seq}: its previous hash is not event {last.row.seq}'s"
            )
        if row.seq == head_seq and row.hash != head_hash:
            report.fail("event-links", f"event {row.seq} is the head but has another hash")
        last = item


def decode_bodies(
    report: EvidenceReport, evidence: Evidence, codec: EventCodec
) -> list[tuple[EventItem, AnyBrokerEvent]]:
    """Each event body decodes to the view the bundle shows; returns those that decode."""
    report.start("event-bodies")
    decoded = []
    for item in evidence.events:
        row = item.row
        try:
            event = codec.decode(row.type, row.schema, row.body)
        except EventDecodeError as exc:
            report.fail("event-bodies", f"event {row.seq}: {exc}")
            continue
        if decoded_view(event) != item.decoded:
            report.fail("event-bodies", f"event {row.seq}: the decoded view differs from its body")
        decoded.append((item, event))
    return decoded


def _concerns(event: AnyBrokerEvent, evidence: Evidence) -> bool:
    part = evidence.part.commitment
    match event:
        case (
            CommitmentRegistered()
            | RegistrationRefused()
            | ReservationReleased()
            | PaywordsRedeemed()
        ):
            return event.commitment_id == evidence.commitment_id
        case RedemptionRejected():
            return presents(event, evidence.commitment_id)
        case InvoiceIssued():
            return event.buyer == part.buyer
        case StatementIssued():
            return event.vendor == part.vendor
        case PeriodClosed():
            return True
        case _:
            return False


def check_streams(
    report: EvidenceReport, evidence: Evidence, decoded: list[tuple[EventItem, AnyBrokerEvent]]
) -> CommitmentRegistered | None:
    """Every event is about this commitment, whose stream is whole and registered once."""
    report.start("event-streams")
    own = f"commitment:{evidence.commitment_id.hex()}"
    versions = []
    registrations: list[CommitmentRegistered] = []
    for item, event in decoded:
        row = item.row
        if stream_of(event) != row.stream:
            report.fail("event-streams", f"event {row.seq} is filed under another stream")
        if not _concerns(event, evidence):
            report.fail("event-streams", f"event {row.seq} ({row.type}) is about something else")
        if row.stream == own:
            versions.append(row.version)
            if isinstance(event, CommitmentRegistered):
                registrations.append(event)
    if versions != list(range(1, len(versions) + 1)):
        report.fail(
            "event-streams",
            f"the commitment's stream has versions {versions}: events are missing or repeated",
        )
    if len(registrations) != 1:
        report.fail("event-streams", f"{len(registrations)} registrations of the commitment")
        return None
    (registration,) = registrations
    part = evidence.part.commitment
    if (
        registration.commitment != evidence.signed
        or (registration.buyer, registration.vendor) != (part.buyer, part.vendor)
        or (registration.length, registration.unit_value) != (part.length, part.unit_value)
    ):
        report.fail("event-streams", "the registration differs from the signed commitment")
    return registration
