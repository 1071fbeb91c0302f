"""Checking a dispute evidence bundle offline: from its bytes, the broker key, a ledger copy.

Every check runs (a failed one does not hide the others), each under its own name, so a
disputing party sees exactly which claim does not hold. Without a ledger copy the bundle
proves what the broker asserts under its signature, and that the buyer really released
the paywords it is charged for; with one, that those events sit in the ledger's hash
chain and that none concerning the commitment was left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from broker_ledger.codec import DEFAULT_CODEC, EventCodec
from broker_ledger.evidence_bundle import BundleFormatError, parse
from broker_ledger.evidence_credentials import check_broker_signature, check_credentials
from broker_ledger.evidence_events import check_links, check_streams, decode_bodies
from broker_ledger.evidence_ledger import check_against_ledger
from broker_ledger.evidence_money import (
    check_billing,
    check_payword_chain,
    check_redemptions,
    check_total,
)
from broker_ledger.evidence_report import EvidenceReport


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
    check_broker_signature(report, data, evidence, broker_key)
    credentials = check_credentials(report, evidence)
    check_links(report, evidence)
    decoded = decode_bodies(report, evidence, codec)
    check_streams(report, evidence, decoded)
    redemptions = check_redemptions(report, evidence, decoded)
    signed_length = None if credentials is None else credentials[0].length
    check_payword_chain(report, evidence, redemptions, signed_length)
    check_total(report, evidence, redemptions)
    check_billing(report, evidence, decoded, redemptions)
    if ledger is not None:
        check_against_ledger(report, evidence, ledger, codec)
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
