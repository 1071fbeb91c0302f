"""Checking a dispute evidence bundle offline: from its bytes, the broker key, a ledger copy.

Every check runs (a failed one does not hide the others), each under its own name, so a
disputing party sees exactly which claim does not hold. Without a ledger copy the bundle
proves what the broker asserts under its signature, and that the buyer really released
the paywords it is charged for; with one, that those events sit in the ledger's hash
chain and that none concerning the commitment was left out.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from broker_ledger.codec import DEFAULT_CODEC, EventCodec, EventDecodeError
from broker_ledger.evidence import (
    TAG_EVIDENCE,
    EvidenceError,
    canonical_bytes,
    collect,
    decoded_view,
    ledger_meta,
    open_readonly,
    presents,
)
from broker_ledger.evidence_bundle import (
    BundleFormatError,
    EventItem,
    Evidence,
    LinePart,
    parse,
)
from broker_ledger.format import GENESIS, link_hash
from broker_ledger.store import StoredEvent
from protocol import chain
from protocol.broker_events import (
    AnyBrokerEvent,
    BillingLine,
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
from protocol.codec import decode_certificate, decode_commitment, decode_signed
from protocol.credentials import commitment_id
from protocol.crypto import KEY_SIZE, TAG_CERTIFICATE, TAG_COMMITMENT, verify_signature
from protocol.errors import AuthenticationError, MalformedMessageError
from protocol.messages import Certificate, Commitment

CHECKS: Final = (
    "bundle-format",
    "broker-signature",
    "certificate-signature",
    "commitment-signature",
    "commitment-fields",
    "event-links",
    "event-bodies",
    "event-streams",
    "redemptions",
    "redemption-amounts",
    "payword-chain",
    "total-charged",
    "billing",
    "ledger-inclusion",
    "ledger-completeness",
)
CHUNK: Final = 20_000


# --- the report --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvidenceFinding:
    """One claim of the bundle that does not hold."""

    check: str
    detail: str


@dataclass(slots=True)
class EvidenceReport:
    """Which checks ran, which held, and what was found."""

    path: str = ""
    key_source: str = ""
    ledger: str | None = None
    evidence: Evidence | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    findings: list[EvidenceFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True only when the bundle parsed and every check that ran held."""
        return bool(self.checks) and all(self.checks.values()) and not self.findings

    def start(self, *checks: str) -> None:
        """Mark checks as run (and holding until a failure says otherwise)."""
        for check in checks:
            self.checks.setdefault(check, True)

    def fail(self, check: str, detail: str) -> None:
        """Record a finding under a named check."""
        self.checks[check] = False
        self.findings.append(EvidenceFinding(check, detail))


# --- the checks --------------------------------------------------------------------------------


def _signature_ok(key: bytes, tag: bytes, data: bytes, signature: bytes) -> bool:
    try:
        verify_signature(key, tag, data, signature)
    except AuthenticationError:
        return False
    return True


def _broker_signature(
    report: EvidenceReport, data: dict[str, Any], evidence: Evidence, expected: bytes | None
) -> None:
    report.start("broker-signature")
    key = evidence.broker_key
    if expected is not None and not hmac.compare_digest(key, expected):
        report.fail(
            "broker-signature",
            f"the bundle names broker key {key.hex()[:16]}…, not the expected"
            f" {expected.hex()[:16]}…",
        )
    try:
        message = canonical_bytes(data)
    except ValueError:
        report.fail("broker-signature", "the bundle has no canonical form (a non-finite number)")
        return
    if not _signature_ok(key, TAG_EVIDENCE, message, evidence.signature):
        report.fail("broker-signature", "the signature does not verify over the bundle's bytes")


def _credentials(
    report: EvidenceReport, evidence: Evidence
) -> tuple[Commitment, Certificate] | None:
    report.start("certificate-signature", "commitment-signature", "commitment-fields")
    try:
        signed = decode_signed(evidence.signed)
        commitment = decode_commitment(signed.body)
        certificate_signed = decode_signed(commitment.buyer_certificate)
        certificate = decode_certificate(certificate_signed.body)
    except MalformedMessageError as exc:
        for check in ("certificate-signature", "commitment-signature", "commitment-fields"):
            report.fail(check, f"the signed commitment does not decode: {exc}")
        return None
    broker = evidence.part.broker
    if not _signature_ok(
        evidence.broker_key, TAG_CERTIFICATE, certificate_signed.body, certificate_signed.signature
    ):
        report.fail("certificate-signature", "the buyer's certificate is not signed by the broker")
    if certificate.issuer != broker.id:
        report.fail("certificate-signature", f"certificate issued by {certificate.issuer!r}")
    if certificate.role != "buyer":
        report.fail("certificate-signature", f"certificate is for a {certificate.role}")
    if not certificate.not_before <= commitment.issued_at <= certificate.not_after:
        report.fail("certificate-signature", "certificate not valid when the commitment was made")
    if not _signature_ok(certificate.sign_key, TAG_COMMITMENT, signed.body, signed.signature):
        report.fail("commitment-signature", "the commitment is not signed by the certified buyer")
    if commitment.currency != certificate.currency:
        report.fail("commitment-signature", "commitment currency differs from the certificate's")
    if commitment.not_after > certificate.not_after:
        report.fail("commitment-signature", "the commitment outlives the buyer's certificate")
    _fields(report, evidence, commitment, certificate, commitment_id(signed.body))
    return commitment, certificate


def _fields(
    report: EvidenceReport,
    evidence: Evidence,
    commitment: Commitment,
    certificate: Certificate,
    cid: bytes,
) -> None:
    part = evidence.part.commitment
    if cid != evidence.commitment_id:
        report.fail("commitment-fields", "the id is not the hash of the signed commitment")
    claimed = {
        "buyer": part.buyer,
        "buyer_serial": part.buyer_serial,
        "buyer_sign_key": evidence.buyer_sign_key,
        "vendor": part.vendor,
        "unit_value": part.unit_value,
        "currency": part.currency,
        "length": part.length,
        "root": evidence.root,
        "issued_at": part.issued_at,
        "not_after": part.not_after,
    }
    actual = {
        "buyer": certificate.subject,
        "buyer_serial": certificate.serial,
        "buyer_sign_key": certificate.sign_key,
        "vendor": commitment.vendor,
        "unit_value": commitment.unit_value,
        "currency": commitment.currency,
        "length": commitment.length,
        "root": commitment.root,
        "issued_at": commitment.issued_at,
        "not_after": commitment.not_after,
    }
    for name, value in claimed.items():
        if actual[name] != value:
            report.fail("commitment-fields", f"{name} differs from the signed commitment")


def _links(report: EvidenceReport, evidence: Evidence) -> None:
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


def _bodies(
    report: EvidenceReport, evidence: Evidence, codec: EventCodec
) -> list[tuple[EventItem, AnyBrokerEvent]]:
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


def _streams(
    report: EvidenceReport, evidence: Evidence, decoded: list[tuple[EventItem, AnyBrokerEvent]]
) -> CommitmentRegistered | None:
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


def _redemptions(
    report: EvidenceReport, evidence: Evidence, decoded: list[tuple[EventItem, AnyBrokerEvent]]
) -> list[tuple[int, PaywordsRedeemed]]:
    report.start("redemptions", "redemption-amounts")
    part = evidence.part.commitment
    own = f"commitment:{evidence.commitment_id.hex()}"
    redemptions = [
        (item.row.seq, event)
        for item, event in decoded
        if item.row.stream == own and isinstance(event, PaywordsRedeemed)
    ]
    registered = next(
        (
            item.row.seq
            for item, e in decoded
            if item.row.stream == own and isinstance(e, CommitmentRegistered)
        ),
        None,
    )
    reached = 0
    for seq, event in redemptions:
        if registered is None or seq < registered:
            report.fail("redemptions", f"event {seq}: a redemption before the registration")
        if event.commitment != evidence.signed:
            report.fail("redemptions", f"event {seq}: redeemed with other commitment bytes")
        if (event.buyer, event.vendor) != (part.buyer, part.vendor):
            report.fail("redemptions", f"event {seq}: credits another buyer or vendor")
        if event.from_index != reached:
            report.fail(
                "redemptions",
                f"event {seq}: redeems from index {event.from_index}, but the previous"
                f" redemption reached {reached}",
            )
        if event.index <= event.from_index or event.units != event.index - event.from_index:
            report.fail(
                "redemptions",
                f"event {seq}: {event.units} units do not take index {event.from_index}"
                f" to {event.index}",
            )
        if event.amount != event.units * part.unit_value:
            report.fail(
                "redemption-amounts",
                f"event {seq}: amount {event.amount} is not {event.units} units"
                f" x unit value {part.unit_value}",
            )
        reached = event.index
    last_word = redemptions[-1][1].payword if redemptions else evidence.root
    highest = evidence.part.highest
    if reached != highest.index:
        report.fail(
            "redemptions",
            f"the last redemption reaches index {reached}, the bundle claims {highest.index}",
        )
    elif last_word != evidence.payword:
        report.fail("redemptions", "the claimed highest payword is not the one last redeemed")
    return redemptions


def _payword_chain(
    report: EvidenceReport,
    evidence: Evidence,
    redemptions: list[tuple[int, PaywordsRedeemed]],
    signed_length: int | None,
) -> None:
    report.start("payword-chain")
    # The signed length bounds the work: a claimed one could make the walk arbitrarily long.
    length = min(evidence.part.commitment.length, signed_length or chain.MAX_CHAIN_LENGTH)
    word, index, intact = evidence.root, 0, True
    for seq, event in redemptions:
        if event.index > length or not chain.extends(event.payword, event.index, word, index):
            report.fail(
                "payword-chain",
                f"event {seq}: payword {event.index} does not hash down to payword {index}",
            )
            intact = False
            break
        word, index = event.payword, event.index
    claimed = evidence.part.highest.index
    if intact and (index, word) == (claimed, evidence.payword):
        return  # the segments compose: the highest payword hashes to the root in `index` steps
    if claimed > length:
        report.fail("payword-chain", f"index {claimed} is beyond the chain's length {length}")
    elif (
        claimed < 0
        or len(evidence.payword) != KEY_SIZE
        or not hmac.compare_digest(chain.walk(evidence.payword, claimed, claimed), evidence.root)
    ):
        report.fail(
            "payword-chain", f"the highest payword does not hash to the root in {claimed} steps"
        )


def _total(
    report: EvidenceReport, evidence: Evidence, redemptions: list[tuple[int, PaywordsRedeemed]]
) -> None:
    report.start("total-charged")
    charged = evidence.part.charged
    unit_value = evidence.part.commitment.unit_value
    index = evidence.part.highest.index
    if charged.total != index * unit_value:
        report.fail(
            "total-charged",
            f"charged {charged.total}, but index {index} x unit value {unit_value}"
            f" is {index * unit_value}",
        )
    redeemed = sum(event.amount for _, event in redemptions)
    if redeemed != charged.total:
        report.fail("total-charged", f"the redemptions add up to {redeemed}, not {charged.total}")
    if charged.unbilled < 0 or charged.billed + charged.unbilled != charged.total:
        report.fail("total-charged", "billed and unbilled do not add up to the total")


def _billing(
    report: EvidenceReport,
    evidence: Evidence,
    decoded: list[tuple[EventItem, AnyBrokerEvent]],
    redemptions: list[tuple[int, PaywordsRedeemed]],
) -> None:
    report.start("billing")
    part = evidence.part
    by_seq = {item.row.seq: event for item, event in decoded}
    billed, covered = 0, 0
    for entry in part.billing:
        name = entry.period
        marker = by_seq.get(entry.closed_seq)
        if not (
            isinstance(marker, PeriodClosed)
            and marker.period == name
            and (marker.after_sequence, marker.through_sequence)
            == (entry.after_sequence, entry.through_sequence)
        ):
            report.fail("billing", f"period {name}: no matching closing event {entry.closed_seq}")
        share = [
            e for seq, e in redemptions if entry.after_sequence < seq <= entry.through_sequence
        ]
        units, amount = sum(e.units for e in share), sum(e.amount for e in share)
        covered += len(share)
        if (units, amount) != (entry.units, entry.amount):
            report.fail(
                "billing",
                f"period {name}: the redemptions it covers come to {units} units, {amount};"
                f" the bundle says {entry.units} units, {entry.amount}",
            )
        invoice = by_seq.get(entry.invoice_seq)
        if not (
            isinstance(invoice, InvoiceIssued)
            and (invoice.period, invoice.buyer) == (name, part.commitment.buyer)
            and _has_line(invoice.lines, part.commitment.vendor, entry.invoice_line, units, amount)
        ):
            report.fail("billing", f"period {name}: the buyer's invoice does not bill this")
        statement = by_seq.get(entry.statement_seq)
        if not (
            isinstance(statement, StatementIssued)
            and (statement.period, statement.vendor) == (name, part.commitment.vendor)
            and _has_line(
                statement.lines, part.commitment.buyer, entry.statement_line, units, amount
            )
        ):
            report.fail("billing", f"period {name}: the vendor's statement does not credit this")
        billed += entry.amount
    if covered > len(redemptions):
        report.fail("billing", "billing periods overlap: a redemption is billed twice")
    if billed != part.charged.billed:
        report.fail("billing", f"the periods bill {billed}, the bundle says {part.charged.billed}")


def _has_line(
    lines: list[BillingLine], counterparty: str, line: LinePart, units: int, amount: int
) -> bool:
    found = [x for x in lines if x.counterparty == counterparty]
    return (
        len(found) == 1
        and (found[0].units, found[0].amount) == (line.units, line.amount)
        and line.units >= units
        and line.amount >= amount
    )


# --- against a copy of the ledger --------------------------------------------------------------


def _against_ledger(
    report: EvidenceReport, evidence: Evidence, ledger: Path, codec: EventCodec
) -> None:
    report.start("ledger-inclusion", "ledger-completeness")
    try:
        db = open_readonly(ledger)
    except EvidenceError as exc:
        report.fail("ledger-inclusion", str(exc))
        report.fail("ledger-completeness", str(exc))
        return
    try:
        db.execute("BEGIN")
        meta = ledger_meta(db)
        if meta.get("broker_id") != evidence.part.broker.id:
            report.fail("ledger-inclusion", f"the ledger is broker {meta.get('broker_id')!r}'s")
        stored_key = meta.get("broker_sign_key")
        if stored_key is not None and stored_key != evidence.broker_key.hex():
            report.fail("ledger-inclusion", "the ledger names another broker key")
        _inclusion(report, evidence, db)
        _completeness(report, evidence, db, codec)
        db.execute("COMMIT")
    except (sqlite3.DatabaseError, EvidenceError) as exc:
        report.fail("ledger-inclusion", f"cannot read {ledger}: {exc}")
    finally:
        db.close()


def _recomputed(db: sqlite3.Connection, through: int) -> Iterator[tuple[StoredEvent, bytes]]:
    """Each row up to ``through`` with its link hash recomputed from genesis."""
    link = GENESIS
    cursor = db.execute(
        "SELECT seq, stream, version, type, schema, at, body, hash FROM event_log"
        " WHERE seq <= ? ORDER BY seq",
        (through,),
    )
    while rows := cursor.fetchmany(CHUNK):
        for seq, stream, version, kind, schema, at, body, stored in rows:
            row = StoredEvent(seq, stream, version, kind, schema, at, bytes(body), bytes(stored))
            link = link_hash(link, seq, stream, version, kind, schema, at, row.body)
            yield row, link


def _differs(row: StoredEvent, item: EventItem) -> bool:
    other = item.row
    return (row.stream, row.version, row.type, row.schema, row.at, row.body) != (
        other.stream,
        other.version,
        other.type,
        other.schema,
        other.at,
        other.body,
    )


def _unlinked(wanted: dict[int, EventItem], chained: dict[int, bytes]) -> list[int]:
    """Bundle events whose link hashes are not the ledger's, recomputed from genesis."""
    return [
        seq
        for seq, item in sorted(wanted.items())
        if chained.get(seq) != item.row.hash or chained.get(seq - 1) != item.previous
    ]


def _inclusion(report: EvidenceReport, evidence: Evidence, db: sqlite3.Connection) -> None:
    """Recompute the chain from genesis to the bundle's head and find the bundle in it."""
    head_seq, head_hash = evidence.head
    wanted = {item.row.seq: item for item in evidence.events}
    needed = {*wanted, *(seq - 1 for seq in wanted), head_seq}
    chained: dict[int, bytes] = {0: GENESIS}
    seen: dict[int, StoredEvent] = {}
    reached, broken = 0, 0
    for row, link in _recomputed(db, head_seq):
        if row.seq != reached + 1:
            report.fail("ledger-inclusion", f"the ledger has no event {reached + 1}")
            return
        reached = row.seq
        if link != row.hash and not broken:
            broken = row.seq
        if row.seq in needed:
            chained[row.seq], seen[row.seq] = link, row
    if reached < head_seq:
        report.fail(
            "ledger-inclusion", f"the ledger ends at event {reached}, before the head {head_seq}"
        )
        return
    if broken:
        report.fail("ledger-inclusion", f"the ledger's own hash chain breaks at event {broken}")
    if differ := [
        seq for seq, item in sorted(wanted.items()) if seq not in seen or _differs(seen[seq], item)
    ]:
        report.fail("ledger-inclusion", f"the ledger holds other bytes at events {differ[:10]}")
    if unlinked := _unlinked(wanted, chained):
        report.fail(
            "ledger-inclusion",
            f"{len(unlinked)} event(s) are not in the ledger's hash chain with the bundle's"
            f" link hashes (first: event {unlinked[0]})",
        )
    if chained.get(head_seq) != head_hash:
        report.fail("ledger-inclusion", f"the ledger's hash at event {head_seq} is not the head")


def _completeness(
    report: EvidenceReport, evidence: Evidence, db: sqlite3.Connection, codec: EventCodec
) -> None:
    try:
        rows = collect(db, evidence.commitment_id, evidence.head[0], codec)
    except EvidenceError as exc:
        report.fail("ledger-completeness", str(exc))
        return
    in_ledger = {row.seq for row in rows}
    in_bundle = {item.row.seq for item in evidence.events}
    if missing := sorted(in_ledger - in_bundle):
        report.fail(
            "ledger-completeness",
            f"the bundle leaves out {len(missing)} event(s) about this commitment: {missing[:10]}",
        )
    if extra := sorted(in_bundle - in_ledger):
        report.fail(
            "ledger-completeness",
            f"the ledger does not relate event(s) {extra[:10]} to this commitment",
        )


# --- entry points ------------------------------------------------------------------------------


def verify(
    data: Any,  # noqa: ANN401 - the parsed JSON, whatever it is
    broker_key: bytes | None = None,
    ledger: Path | None = None,
    codec: EventCodec = DEFAULT_CODEC,
) -> EvidenceReport:
    """Run every check on a parsed bundle; never raises for what the bundle holds."""
    report = EvidenceReport(
        key_source="given on the command line"
        if broker_key is not None
        else "taken from the bundle itself: pass --broker-key to trust nothing",
        ledger=None if ledger is None else str(ledger),
    )
    report.start("bundle-format")
    try:
        evidence = parse(data)
    except BundleFormatError as exc:
        report.fail("bundle-format", str(exc))
        return report
    report.evidence = evidence
    _broker_signature(report, data, evidence, broker_key)
    credentials = _credentials(report, evidence)
    _links(report, evidence)
    decoded = _bodies(report, evidence, codec)
    _streams(report, evidence, decoded)
    redemptions = _redemptions(report, evidence, decoded)
    signed_length = None if credentials is None else credentials[0].length
    _payword_chain(report, evidence, redemptions, signed_length)
    _total(report, evidence, redemptions)
    _billing(report, evidence, decoded, redemptions)
    if ledger is not None:
        _against_ledger(report, evidence, ledger, codec)
    return report


def verify_file(
    path: Path,
    broker_key: bytes | None = None,
    ledger: Path | None = None,
    codec: EventCodec = DEFAULT_CODEC,
) -> EvidenceReport:
    """Read a bundle file and verify it; unreadable JSON is a ``bundle-format`` failure."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        report = EvidenceReport(path=str(path))
        report.fail("bundle-format", f"cannot read {path} as JSON: {exc}")
        return report
    report = verify(data, broker_key, ledger, codec)
    report.path = str(path)
    return report


def as_dict(report: EvidenceReport) -> dict[str, Any]:
    """The verification as JSON-ready data."""
    evidence = report.evidence
    summary: dict[str, Any] = {}
    if evidence is not None:
        part = evidence.part
        summary = {
            "broker": part.broker.id,
            "commitment": part.commitment.id,
            "buyer": part.commitment.buyer,
            "vendor": part.commitment.vendor,
            "index": part.highest.index,
            "charged": part.charged.total,
            "events": len(part.events),
            "ledger_head": part.ledger_head.seq,
        }
    return {
        "evidence": report.path,
        "ok": report.ok,
        "broker_key": report.key_source,
        "ledger": report.ledger,
        **summary,
        "checks": report.checks,
        "findings": [{"check": f.check, "detail": f.detail} for f in report.findings],
    }


def as_text(report: EvidenceReport) -> str:
    """The human summary; every failure on its own ``FAILED: check: detail`` line."""
    lines = [f"micropay audit: evidence {report.path}"]
    evidence = report.evidence
    if evidence is not None:
        part = evidence.part
        commitment = part.commitment
        charged = part.charged
        lines += [
            f"  broker        {part.broker.id} (public key {report.key_source})",
            f"  commitment    {commitment.id}",
            (
                f"                {commitment.buyer} -> {commitment.vendor}, unit value"
                f" {commitment.unit_value} {commitment.currency}, length {commitment.length:,}"
            ),
            (
                f"  charged       {charged.total:,} for index {part.highest.index:,}"
                f" ({charged.billed:,} billed in {len(part.billing)} period(s),"
                f" {charged.unbilled:,} not yet billed)"
            ),
            f"  events        {len(part.events)}, ledger head {part.ledger_head.seq:,}",
            "  ledger        "
            + (
                f"checked against {report.ledger}"
                if report.ledger
                else "no copy given: inclusion in the hash chain not checked"
            ),
        ]
    lines.append("  checks")
    lines.extend(
        f"    {'ok  ' if passed else 'FAIL'} {name}" for name, passed in report.checks.items()
    )
    lines.extend(f"FAILED: {f.check}: {f.detail}" for f in report.findings)
    lines.append(
        "result: PASSED" if report.ok else f"result: FAILED ({len(report.findings)} findings)"
    )
    return "\n".join(lines)
