"""What checking an evidence bundle found: every check by name, and each finding.

Every check runs and holds until a finding says otherwise, so a disputing party sees
exactly which claim does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from broker_ledger.evidence_bundle import Evidence

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
