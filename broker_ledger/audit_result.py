"""What an audit found: the report it fills in and the findings it records.

Its own module so that the audit run and its per-event rules can both fill in a report
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

MAX_FINDINGS: Final = 100


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing that does not hold; ``seq`` is the event it was found at (if any)."""

    seq: int | None
    check: str
    detail: str


@dataclass(slots=True)
class AuditReport:
    """Everything the audit counted, recomputed and found.

    ``head_*`` is the last event read: its sequence number, its time (ms) and the link
    hash recomputed from genesis, so a reader knows which ledger state the verdict is on.
    """

    path: str
    broker_id: str = ""
    key_source: str = ""
    head_seq: int = 0
    head_at: int = 0
    head_hash: bytes = b""
    events: int = 0
    streams: int = 0
    accounts: int = 0
    certificates: int = 0
    commitments: int = 0
    redemptions: int = 0
    hashes_checked: int = 0
    signatures_verified: int = 0
    checkpoints: int = 0
    key_rotations: int = 0
    unsigned_tail: int = 0
    periods: int = 0
    debited: int = 0
    credited: int = 0
    fees: int = 0
    settled: int = 0
    # --- scrip (docs/SCHEMES.md 3.10): the four totals of scrip-conservation ---
    scrip_serials: int = 0
    scrip_deposits: int = 0
    scrip_minted: int = 0
    scrip_credited: int = 0
    scrip_returned: int = 0
    scrip_outstanding: int = 0
    projection_position: int | None = None
    seconds: float = 0.0
    passed: dict[str, bool] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    findings_total: int = 0

    @property
    def ok(self) -> bool:
        """True only when every check held."""
        return self.findings_total == 0

    @property
    def first_failure(self) -> Finding | None:
        """The failure with the lowest sequence number (ledger-wide ones first)."""
        if not self.findings:
            return None
        return min(self.findings, key=lambda f: -1 if f.seq is None else f.seq)

    def fail(self, seq: int | None, check: str, detail: str) -> None:
        """Record a finding under a named check."""
        self.passed[check] = False
        self.findings_total += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(seq, check, detail))


CHECK_NAMES: Final = (
    "hash-links",
    "sequence",
    "stream-versions",
    "event-schemas",
    "checkpoint-signatures",
    "key-rotations",
    "signed-head",
    "certificate-signatures",
    "commitment-signatures",
    "payword-chains",
    "redemption-arithmetic",
    "no-over-credit",
    "billing",
    "scrip-conservation",
    "scrip-serials",
    "scrip-arithmetic",
    "scrip-limits",
    "debits-equal-credits",
    "projections",
    "allowance-grants",
)
