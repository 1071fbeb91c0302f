"""How an audit report reads: a short summary for people, JSON for machines."""

from __future__ import annotations

import json
import time
from typing import Any

from broker_ledger.audit_result import AuditReport


def as_dict(report: AuditReport) -> dict[str, Any]:
    """Everything in the report, JSON-ready."""
    first = report.first_failure
    return {
        "ledger": report.path,
        "ok": report.ok,
        "broker": report.broker_id,
        "broker_key": report.key_source,
        "head": {"seq": report.head_seq, "at": report.head_at, "hash": report.head_hash.hex()},
        "seconds": round(report.seconds, 3),
        "events": report.events,
        "events_per_second": round(report.events / report.seconds) if report.seconds else None,
        "streams": report.streams,
        "accounts": report.accounts,
        "certificates": report.certificates,
        "commitments": report.commitments,
        "redemptions": report.redemptions,
        "signatures_verified": report.signatures_verified,
        "hashes_checked": report.hashes_checked,
        "checkpoints_verified": report.checkpoints,
        "broker_key_rotations": report.key_rotations,
        "events_after_last_checkpoint": report.unsigned_tail,
        "periods_closed": report.periods,
        "debited": report.debited,
        "credited": report.credited,
        "fees": report.fees,
        "settled": report.settled,
        "scrip": {
            "serials": report.scrip_serials,
            "deposits": report.scrip_deposits,
            "minted": report.scrip_minted,
            "credited": report.scrip_credited,
            "returned": report.scrip_returned,
            "outstanding": report.scrip_outstanding,
        },
        "projection_position": report.projection_position,
        "checks": report.passed,
        "first_failure": None
        if first is None
        else {"seq": first.seq, "check": first.check, "detail": first.detail},
        "findings": [{"seq": f.seq, "check": f.check, "detail": f.detail} for f in report.findings],
        "findings_total": report.findings_total,
    }


def as_json(report: AuditReport) -> str:
    """The report as one JSON document."""
    return json.dumps(as_dict(report), indent=2)


def as_text(report: AuditReport) -> str:
    """The human summary."""
    rate = f" ({report.events / report.seconds:,.0f} events/s)" if report.seconds else ""
    lines = [
        f"micropay audit: {report.path}",
        f"  head          {head_line(report)}",
        f"  broker        {report.broker_id or '?'} (public key {report.key_source})",
        (
            f"  events        {report.events:,} in {report.seconds:.2f} s{rate}, "
            f"{report.streams:,} streams"
        ),
        (
            f"  accounts      {report.accounts:,}, certificates {report.certificates:,}, "
            f"commitments {report.commitments:,}, redemptions {report.redemptions:,}"
        ),
        (
            f"  evidence      {report.signatures_verified:,} signatures verified, "
            f"{report.hashes_checked:,} payword hashes checked"
        ),
        f"  checkpoints   {report.checkpoints:,} verified"
        + (f", {report.unsigned_tail:,} events after the last one" if report.unsigned_tail else "")
        + (f", under {report.key_rotations + 1} broker keys" if report.key_rotations else ""),
        f"  billing       closed periods {report.periods:,}, fees {report.fees:,}",
        (
            f"  money         debited {report.debited:,}, credited {report.credited:,}, "
            f"settled {report.settled:,} (minor units)"
        ),
    ]
    if report.scrip_serials:
        lines.append(
            f"  scrip         {report.scrip_serials:,} serials, {report.scrip_deposits:,} deposits:"
            f" minted {report.scrip_minted:,} = credited {report.scrip_credited:,}"
            f" + returned {report.scrip_returned:,} + outstanding {report.scrip_outstanding:,}"
        )
    if report.projection_position is not None:
        lines.append(f"  projections   compared at position {report.projection_position:,}")
    lines.append("  checks")
    counts: dict[str, int] = {}
    for finding in report.findings:
        counts[finding.check] = counts.get(finding.check, 0) + 1
    for name, passed in report.passed.items():
        mark = "ok  " if passed else "FAIL"
        extra = "" if passed else f"  ({counts.get(name, 0)} shown)"
        lines.append(f"    {mark} {name}{extra}")
    first = report.first_failure
    if first is None:
        lines.append("result: PASSED")
    else:
        where = "ledger" if first.seq is None else f"sequence {first.seq}"
        lines.append(f"result: FAILED at {where}: {first.check}: {first.detail}")
        if report.findings_total > 1:
            lines.append(f"        ({report.findings_total} findings in all; --json lists them)")
    return "\n".join(lines)


def head_line(report: AuditReport) -> str:
    """The ledger state the verdict is about: last sequence number, its time, its hash."""
    if not report.head_hash:
        return "none read"
    if report.head_seq == 0:
        return f"seq 0 (no events), hash {report.head_hash.hex()}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.head_at / 1000))
    return f"seq {report.head_seq:,} at {stamp}, hash {report.head_hash.hex()}"
