"""How fast the auditor re-verifies a large, valid broker ledger from its bytes alone.

Generates a ledger of ``--events`` events (default 1,000,000) that passes every check:
a real broker Ed25519 key, real certificates for ~500 buyers and ~50 vendors, ~20,000 real
commitments signed by the buyers' keys over real PayWord chains, and redemptions of 1..10
units each whose paywords hash down the chain from the previous redemption, interleaved
over ~1,000 open commitments at a time; plus a few ``CreditLimitExceeded`` and
``RedemptionRejected`` events, a few billing periods closed with ``close_period`` (invoices,
statements, a ``PeriodClosed`` marker; a short unbilled tail follows the last one), signed
checkpoints (the store signs at a commit once 10,000 events have passed: here one per
20,000-event batch), and the read models projected with ``Projector``. Then it
runs ``LedgerAudit`` (progress on stderr) and prints its counts, speed and per-check results.

Generation is not what is measured: events go through ``EventStore.append_events`` in
batches of 20,000 with ``synchronous=OFF``, and with the store's codec given a tag table
(``EventCodec.encode`` otherwise spends ~100 µs per event in ``msgspec.inspect``; the
bytes are identical, which the audit's hash and schema checks confirm). The ledger is
cached in ``--cache-dir`` under a name derived from the parameters, so reruns only audit.

Run: ``uv run --frozen python bench/ledger_audit.py [--events N] [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import msgspec

from broker_ledger.audit import LedgerAudit
from broker_ledger.audit_result import AuditReport
from broker_ledger.billing import close_period
from broker_ledger.codec import EVENT_CLASSES, EventCodec
from broker_ledger.projections import Projector
from broker_ledger.store import FORMAT, SCHEMA, EventStore
from protocol.broker_events import (
    AccountOpened,
    AnyBrokerEvent,
    CertificateIssued,
    CommitmentRegistered,
    CreditLimitExceeded,
    PaywordsRedeemed,
    RedemptionRejected,
)
from protocol.chain import HashChain
from protocol.credentials import sign_commitment
from protocol.crypto import Identity
from protocol.messages import Role
from tests.support.forgery import certificate, commitment
from tests.support.world import seeded_identity

GENERATOR: Final = "micropay-bench-ledger/1"  # bump when the generated ledger changes
BROKER: Final = "broker"
T0_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS: Final = 86_400_000
MAX_STEP: Final = 10
MEAN_STEP: Final = (1 + MAX_STEP) / 2
BATCH: Final = 20_000
READ_CHUNK: Final = 50_000
BILLED_SHARE: Final = 0.98  # the periods cover this much; the rest is an unbilled tail
REJECT_EVERY: Final = 10_000
OVER_LIMIT_BUYERS: Final = 5
FEE_BASIS_POINTS: Final = 250
TARGET_SECONDS_PER_MILLION: Final = 30.0


@dataclass(frozen=True, slots=True)
class Params:
    """Everything that shapes the generated ledger (and names its cache file)."""

    events: int
    buyers: int
    vendors: int
    commitments: int
    open_at_once: int
    periods: int
    seed: int

    @property
    def key(self) -> str:
        """A short stable digest of the parameters and the generator version."""
        text = json.dumps(
            {"generator": GENERATOR, "format": FORMAT, "schema": SCHEMA, **asdict(self)},
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def params_from(args: argparse.Namespace) -> Params:
    """Defaults scaled to the event count; ``--quick`` means a 20,000-event ledger."""
    events = args.events if args.events is not None else (20_000 if args.quick else 1_000_000)
    buyers = args.buyers if args.buyers is not None else (20 if args.quick else 500)
    vendors = args.vendors if args.vendors is not None else (5 if args.quick else 50)
    commitments = args.commitments if args.commitments is not None else max(1, events // 50)
    periods = args.periods if args.periods is not None else (2 if args.quick else 4)
    return Params(
        events=events,
        buyers=buyers,
        vendors=vendors,
        commitments=commitments,
        open_at_once=max(1, min(1_000, commitments // 20)),
        periods=periods,
        seed=args.seed,
    )


# --- keys and codec -------------------------------------------------------------------------


def identity_of(name: str, seed: int) -> Identity:
    """Keys from ``--seed`` and the name, so a cached ledger and a rerun agree on the broker key."""
    return seeded_identity(f"{seed}:{name}")


class TaggedCodec(EventCodec):
    """The store's codec with the type tags looked up in a table built once.

    Same ``(type, schema, body)`` as ``EventCodec.encode``, which looks the tag up with
    ``msgspec.inspect`` on every call; used only to generate the ledger quickly.
    """

    def __init__(self) -> None:
        super().__init__()
        self._names = {cls: name for name, cls in EVENT_CLASSES.items()}
        self._fast = msgspec.msgpack.Encoder()

    def encode(self, event: AnyBrokerEvent) -> tuple[str, int, bytes]:
        """(type, schema version, body bytes) of an event."""
        name = self._names[type(event)]
        return name, self.versions[name], self._fast.encode(event)


# --- the generator --------------------------------------------------------------------------


@dataclass(slots=True)
class Party:
    """A buyer or vendor account with its keys and certificate."""

    name: str
    identity: Identity
    certificate: bytes
    credit_limit: int
    unit_value: int = 1


@dataclass(slots=True)
class OpenChain:
    """A registered commitment, redeemed 1..10 units at a time until its chain runs out."""

    commitment_id: bytes
    buyer: str
    vendor: str
    signed: bytes
    unit_value: int
    chain: HashChain
    reserved: int
    index: int = 0


@dataclass(slots=True)
class Counts:
    """What the generator wrote, checked against what the audit finds."""

    events: int = 0
    accounts: int = 0
    certificates: int = 0
    commitments: int = 0
    redemptions: int = 0
    rejections: int = 0
    credit_alerts: int = 0
    periods: int = 0
    billing_events: int = 0
    units: int = 0
    amount: int = 0


@dataclass(slots=True)
class Generator:
    """Builds the ledger event by event, in sequence order, through one ``EventStore``."""

    params: Params
    store: EventStore
    broker: Identity
    progress: Callable[[str], None]
    rng: random.Random = field(init=False)
    at: int = T0_MS
    counts: Counts = field(default_factory=Counts)
    buyers: list[Party] = field(default_factory=list)
    vendors: list[Party] = field(default_factory=list)
    active: list[OpenChain] = field(default_factory=list)
    pending: list[AnyBrokerEvent] = field(default_factory=list)
    debited: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    reserved: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    limits: dict[str, int] = field(default_factory=dict)
    alerted: set[str] = field(default_factory=set)
    period_parties: set[str] = field(default_factory=set)
    serial: int = 0
    mean_length: int = 0
    reported: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.params.seed)

    # the clock and the output

    def tick(self) -> int:
        """Roughly 10 s between events: a million events span about four months."""
        self.at += self.rng.randint(1, 20_000)
        return self.at

    async def emit(self, event: AnyBrokerEvent) -> None:
        """Queue one event; append a full batch through the store."""
        self.pending.append(event)
        self.counts.events += 1
        if len(self.pending) >= BATCH:
            await self.flush()

    async def flush(self) -> None:
        """Append whatever is queued (one transaction)."""
        if self.pending:
            await self.store.append_events(self.pending)
            self.pending = []
        if self.counts.events - self.reported >= 100_000:
            self.reported = self.counts.events
            self.progress(f"generated {self.counts.events:,} / {self.params.events:,} events")

    # accounts

    async def open_account(self, name: str, role: Role, credit_limit: int) -> Party:
        """``AccountOpened`` then ``CertificateIssued`` with a broker-signed certificate."""
        identity = identity_of(name, self.params.seed)
        at = self.tick()
        await self.emit(
            AccountOpened(
                at=at,
                account=name,
                role=role,
                credit_limit=credit_limit,
                currency="EUR",
                token_nonce=self.rng.randbytes(16),
            )
        )
        self.serial += 1
        certified = certificate(
            self.broker, identity, name, at, at + 365 * DAY_MS,
            serial=self.serial, role=role, credit_limit=credit_limit, issuer_id=BROKER,
        )  # fmt: skip
        await self.emit(
            CertificateIssued(
                at=self.tick(), account=name, serial=self.serial, certificate=certified
            )
        )
        self.counts.accounts += 1
        self.counts.certificates += 1
        return Party(name, identity, certified, credit_limit)

    async def open_accounts(self, redemptions: int) -> None:
        """Vendors (each with its unit value), then buyers; a few buyers get a low limit."""
        params = self.params
        for number in range(params.vendors):
            vendor = await self.open_account(f"vendor-{number:03d}", "vendor", 0)
            vendor.unit_value = self.rng.choice((1, 2, 5, 10))
            self.vendors.append(vendor)
        mean_value = sum(v.unit_value for v in self.vendors) / len(self.vendors)
        spend = int(redemptions * MEAN_STEP * mean_value / params.buyers)
        low = set(self.rng.sample(range(params.buyers), min(OVER_LIMIT_BUYERS, params.buyers)))
        for number in range(params.buyers):
            limit = max(1, spend // 2) if number in low else 10**12
            buyer = await self.open_account(f"buyer-{number:05d}", "buyer", limit)
            self.limits[buyer.name] = limit
            self.buyers.append(buyer)

    # commitments and redemptions

    async def open_commitment(self) -> None:
        """A buyer signs a commitment over a fresh chain; the broker registers it.

        Half are registered on-line (the chain's value reserved), half at their first
        redemption (nothing reserved).
        """
        buyer = self.rng.choice(self.buyers)
        vendor = self.rng.choice(self.vendors)
        mean = self.mean_length
        length = self.rng.randint(max(1, mean // 2), max(1, mean + mean // 2))
        chain = HashChain(self.rng.randbytes(32), length)
        at = self.tick()
        signed, commitment_id = sign_commitment(
            buyer.identity,
            commitment(
                vendor.name, buyer.certificate, at, at + 30 * DAY_MS,
                root=chain.root, length=length, unit_value=vendor.unit_value,
            ),
        )  # fmt: skip
        reserved = length * vendor.unit_value if self.rng.random() < 0.5 else 0
        await self.emit(
            CommitmentRegistered(
                at=at,
                commitment_id=commitment_id,
                buyer=buyer.name,
                vendor=vendor.name,
                commitment=signed,
                length=length,
                unit_value=vendor.unit_value,
                reserved=reserved,
            )
        )
        self.reserved[buyer.name] += reserved
        self.active.append(
            OpenChain(
                commitment_id, buyer.name, vendor.name, signed, vendor.unit_value, chain, reserved
            )
        )
        self.counts.commitments += 1

    async def redeem(self) -> None:
        """The next redemption on a random open chain: 1..10 units beyond the last one."""
        slot = self.rng.randrange(len(self.active))
        state = self.active[slot]
        units = min(self.rng.randint(1, MAX_STEP), state.chain.length - state.index)
        index = state.index + units
        amount = units * state.unit_value
        await self.emit(
            PaywordsRedeemed(
                at=self.tick(),
                commitment_id=state.commitment_id,
                buyer=state.buyer,
                vendor=state.vendor,
                commitment=state.signed,
                from_index=state.index,
                index=index,
                payword=state.chain.word(index),
                units=units,
                amount=amount,
            )
        )
        self.counts.redemptions += 1
        self.counts.units += units
        self.counts.amount += amount
        self.period_parties.update((state.buyer, state.vendor))
        state.index = index
        released = min(state.reserved, amount)
        state.reserved -= released
        self.reserved[state.buyer] -= released
        self.debited[state.buyer] += amount
        if index == state.chain.length:
            self.active[slot] = self.active[-1]
            self.active.pop()
        exposure = self.debited[state.buyer] + self.reserved[state.buyer]
        limit = self.limits[state.buyer]
        # The broker alerts at every redemption past the limit; once per buyer here.
        if exposure > limit and state.buyer not in self.alerted:
            self.alerted.add(state.buyer)
            await self.emit(
                CreditLimitExceeded(at=self.at, buyer=state.buyer, exposure=exposure, limit=limit)
            )
            self.counts.credit_alerts += 1

    async def reject(self) -> None:
        """A vendor presents a payword that does not hash to the chain: credited nothing."""
        state = self.rng.choice(self.active)
        index = min(state.index + self.rng.randint(1, MAX_STEP), state.chain.length)
        await self.emit(
            RedemptionRejected(
                at=self.tick(),
                vendor=state.vendor,
                reason=f"payword {index} does not hash to the chain",
                commitment=state.signed,
                index=index,
                payword=self.rng.randbytes(32),
            )
        )
        self.counts.rejections += 1

    async def step(self) -> None:
        """One event: a new commitment while fewer than planned are open, else a redemption."""
        params = self.params
        if not self.active or (
            len(self.active) < params.open_at_once and self.counts.commitments < params.commitments
        ):
            await self.open_commitment()
        elif self.counts.redemptions % REJECT_EVERY == REJECT_EVERY - 1 and not self.rejected_now():
            await self.reject()
        else:
            await self.redeem()

    def rejected_now(self) -> bool:
        """Whether the rejection for this stretch of redemptions was already written."""
        return self.counts.rejections > self.counts.redemptions // REJECT_EVERY

    # periods

    async def close(self, number: int) -> None:
        """Close the next monthly period over everything redeemed since the last one."""
        await self.flush()
        period = f"{2026 + number // 12}-{number % 12 + 1:02d}"
        summary = await close_period(
            self.store, period, at=self.tick(), basis_points=FEE_BASIS_POINTS
        )
        if not summary.newly_closed:
            raise RuntimeError(f"period {period} was already closed")
        written = summary.invoices + summary.statements + 1
        self.counts.events += written
        self.counts.billing_events += written
        self.counts.periods += 1
        self.period_parties = set()

    async def run(self) -> None:
        """Accounts, then periods of interleaved commitments and redemptions, then the tail."""
        params = self.params
        fixed = 2 * (params.buyers + params.vendors) + params.commitments
        billing = params.periods * (params.buyers + params.vendors + 1)
        redemptions = max(1, params.events - fixed - billing)
        redemptions -= redemptions // REJECT_EVERY + OVER_LIMIT_BUYERS
        self.mean_length = max(1, round(MEAN_STEP * redemptions / params.commitments))
        await self.open_accounts(redemptions)
        for number in range(params.periods):
            end = round(params.events * BILLED_SHARE * (number + 1) / params.periods)
            # Leave room for this period's invoices, statements and marker.
            while self.counts.events + len(self.period_parties) + 1 < end:
                await self.step()
            await self.close(number)
        while self.counts.events < params.events:
            await self.step()
        await self.flush()


# --- building, caching, projecting ----------------------------------------------------------


def say(message: str) -> None:
    """Progress and notes go to stderr."""
    print(message, file=sys.stderr, flush=True)


async def generate(path: Path, params: Params, broker: Identity) -> Counts:
    """Write the ledger file (synchronous=OFF: only its contents matter here)."""
    codec = TaggedCodec()
    store = await EventStore.open(path, BROKER, signer=broker, synchronous="OFF", codec=codec)
    try:
        generator = Generator(params, store, broker, say)
        await generator.run()
        head = store.head[0]
        if head != generator.counts.events:
            raise RuntimeError(f"generator counted {generator.counts.events}, store at {head}")
    finally:
        await store.close()
    return generator.counts


async def project(path: Path) -> tuple[int, int]:
    """Bring the read-model tables up to the last event; (events folded, position)."""
    store = await EventStore.open(path, BROKER)
    projector = await Projector.open(path)
    folded = 0
    try:
        while rows := await store.read_all(after=projector.models.position, limit=READ_CHUNK):
            folded += await projector.catch_up((row.seq, store.decode(row)) for row in rows)
        position = projector.models.position
    finally:
        await projector.close()
        await store.close()
    return folded, position


@dataclass(slots=True)
class Ledger:
    """A generated (or cached) ledger file and how it was made."""

    path: Path
    params: Params
    counts: Counts
    generated_seconds: float
    cached: bool
    projected: int = 0
    projection_position: int = 0
    projection_seconds: float = 0.0


def prepare(cache_dir: Path, params: Params, broker: Identity) -> Ledger:
    """The cached ledger for these parameters, generating it first when missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"ledger-{params.key}.db"
    info = cache_dir / f"ledger-{params.key}.json"
    if path.is_file() and info.is_file():
        stored = json.loads(info.read_text())
        if stored.get("params") == asdict(params) and stored.get("generator") == GENERATOR:
            say(f"reusing the cached ledger {path}")
            return Ledger(path, params, Counts(**stored["counts"]), stored["seconds"], cached=True)
    partial = cache_dir / f"ledger-{params.key}.partial.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    say(f"generating {params.events:,} events into {partial} (synchronous=OFF)")
    started = time.perf_counter()
    counts = asyncio.run(generate(partial, params, broker))
    seconds = time.perf_counter() - started
    for suffix in ("-wal", "-shm"):
        if Path(f"{partial}{suffix}").exists():
            with sqlite3.connect(partial) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    partial.replace(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{partial}{suffix}").unlink(missing_ok=True)
    record = {"generator": GENERATOR, "params": asdict(params), "counts": asdict(counts)}
    info.write_text(json.dumps({**record, "seconds": seconds}, indent=2))
    return Ledger(path, params, counts, seconds, cached=False)


# --- the audit ------------------------------------------------------------------------------


class Progress:
    """The audit's progress callback: one line per 10 % (or a live line on a terminal)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.live = sys.stderr.isatty()
        self.next_tenth = 1

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.perf_counter() - self.started
        share = done / total if total else 1.0
        line = f"audit: {done:,} / {total:,} events ({share:.0%}), {elapsed:.1f} s"
        if self.live:
            end = "\n" if done >= total else ""
            print(f"\r{line}", end=end, file=sys.stderr, flush=True)
        elif share * 10 >= self.next_tenth or done >= total:
            self.next_tenth = int(share * 10) + 1
            say(line)


def expectations(report: AuditReport, ledger: Ledger) -> list[str]:
    """Differences between what was generated and what the audit counted."""
    counts = ledger.counts
    wanted = {
        "events": (report.events, counts.events),
        "commitments": (report.commitments, counts.commitments),
        "redemptions": (report.redemptions, counts.redemptions),
        "periods": (report.periods, counts.periods),
        "debited": (report.debited, counts.amount),
        "projection position": (report.projection_position, counts.events),
    }
    problems = [
        f"{name}: audit {got}, generated {want}"
        for name, (got, want) in wanted.items()
        if got != want
    ]
    if "projections" not in report.passed:
        problems.append("the projection check did not run")
    return problems


def versions() -> dict[str, object]:
    """Where the figures were taken."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity) if affinity is not None else os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "cryptography": metadata.version("cryptography"),
        "msgspec": metadata.version("msgspec"),
    }


def summary(report: AuditReport, ledger: Ledger, workers: int) -> dict[str, Any]:
    """Everything printed, as one record."""
    rate = report.events / report.seconds if report.seconds else 0.0
    budget = TARGET_SECONDS_PER_MILLION * report.events / 1_000_000
    return {
        **versions(),
        "ledger": str(ledger.path),
        "ledger_bytes": ledger.path.stat().st_size,
        "params": asdict(ledger.params),
        "generated": asdict(ledger.counts),
        "generation_seconds": round(ledger.generated_seconds, 2),
        "generation_cached": ledger.cached,
        "projector": {
            "events_folded_now": ledger.projected,
            "position": ledger.projection_position,
            "seconds": round(ledger.projection_seconds, 2),
        },
        "audit": {
            "workers": workers,
            "ok": report.ok,
            "events": report.events,
            "streams": report.streams,
            "accounts": report.accounts,
            "certificates": report.certificates,
            "commitments": report.commitments,
            "redemptions": report.redemptions,
            "signatures_verified": report.signatures_verified,
            "hashes_checked": report.hashes_checked,
            "checkpoints": report.checkpoints,
            "unsigned_tail": report.unsigned_tail,
            "periods": report.periods,
            "debited": report.debited,
            "credited": report.credited,
            "fees": report.fees,
            "projection_position": report.projection_position,
            "seconds": round(report.seconds, 3),
            "events_per_s": round(rate, 1),
            "checks": report.passed,
            "findings_total": report.findings_total,
            "findings": [asdict(f) for f in report.findings[:20]],
        },
        "target_seconds": round(budget, 2),
        "target_met": report.ok and report.seconds <= budget,
    }


def text(record: dict[str, Any]) -> str:
    """The human-readable report."""
    audit = record["audit"]
    generated = record["generated"]
    projector = record["projector"]
    how = "cached; it took" if record["generation_cached"] else "took"
    lines = [
        (
            f"Python {record['python']} on {record['platform']}, {record['cpu_count']} CPUs"
            f" ({record['cpus_usable']} usable); SQLite {record['sqlite']},"
            f" cryptography {record['cryptography']}, msgspec {record['msgspec']}"
        ),
        f"ledger {record['ledger']} ({record['ledger_bytes'] / 2**20:,.0f} MiB)",
        (
            f"generation {how} {record['generation_seconds']:.1f} s: {generated['accounts']:,}"
            f" accounts, {generated['commitments']:,} commitments, {generated['redemptions']:,}"
            f" redemptions, {generated['rejections']} rejections, {generated['credit_alerts']}"
            f" credit alerts, {generated['periods']} periods ({generated['billing_events']:,}"
            " billing events)"
        ),
        (
            f"projector: {projector['events_folded_now']:,} events folded now"
            f" ({projector['seconds']:.1f} s), tracking position {projector['position']:,}"
        ),
        "",
        f"audit ({audit['workers']} verification workers): {'OK' if audit['ok'] else 'FAILED'}",
        f"  events               {audit['events']:>14,}",
        f"  streams              {audit['streams']:>14,}",
        f"  commitments          {audit['commitments']:>14,}",
        f"  redemptions          {audit['redemptions']:>14,}",
        f"  signatures verified  {audit['signatures_verified']:>14,}",
        f"  hashes checked       {audit['hashes_checked']:>14,}  (payword chain steps)",
        (
            f"  checkpoints          {audit['checkpoints']:>14,}"
            f"  (unsigned tail {audit['unsigned_tail']})"
        ),
        f"  periods              {audit['periods']:>14,}",
        f"  debited = credited   {audit['debited']:>14,}  (fees {audit['fees']:,})",
        f"  projection position  {audit['projection_position'] or 0:>14,}",
        f"  seconds              {audit['seconds']:>14.2f}",
        f"  events/s             {audit['events_per_s']:>14,.0f}",
        "",
        "checks:",
    ]
    lines += [f"  {name:<24}{'pass' if ok else 'FAIL'}" for name, ok in audit["checks"].items()]
    ran = "ran" if "projections" in audit["checks"] else "did NOT run"
    lines.append(f"projection check {ran} (tracking position {audit['projection_position']})")
    lines += [f"  finding: {f}" for f in audit["findings"]]
    verdict = "met" if record["target_met"] else "NOT met"
    if not audit["ok"]:
        verdict = "not judged: the audit failed"
    lines.append(
        f"target <= {TARGET_SECONDS_PER_MILLION:.0f} s per 1 M events"
        f" ({record['target_seconds']:.1f} s for this ledger): {verdict}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, generate or reuse the ledger, project, audit, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, help="events in the ledger (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help="a 20,000-event ledger (seconds)")
    parser.add_argument("--workers", type=int, default=2, help="signature threads (default 2)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "micropay-ledger-bench",
        help="where generated ledgers are kept for reruns (default: %(default)s)",
    )
    parser.add_argument("--buyers", type=int, help="buyer accounts (default 500)")
    parser.add_argument("--vendors", type=int, help="vendor accounts (default 50)")
    parser.add_argument("--commitments", type=int, help="commitments (default events / 50)")
    parser.add_argument("--periods", type=int, help="billing periods closed (default 4)")
    parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    args = parser.parse_args(argv)
    params = params_from(args)
    minimum = 2 * (params.buyers + params.vendors) + params.periods * (
        params.buyers + params.vendors + 1
    )
    if params.events < 2 * minimum or params.commitments < 1 or args.workers < 1:
        parser.error(f"need --events >= {2 * minimum:,} for these accounts and periods")

    broker = identity_of(BROKER, params.seed)
    ledger = prepare(args.cache_dir, params, broker)
    started = time.perf_counter()
    ledger.projected, ledger.projection_position = asyncio.run(project(ledger.path))
    ledger.projection_seconds = time.perf_counter() - started
    say(f"projector folded {ledger.projected:,} events in {ledger.projection_seconds:.1f} s")

    report = LedgerAudit(
        ledger.path, broker.sign_key, workers=args.workers, progress=Progress()
    ).run()
    record = summary(report, ledger, args.workers)
    problems = expectations(report, ledger)
    record["mismatches"] = problems
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(text(record))
        for problem in problems:
            print(f"MISMATCH {problem}")
    return 0 if report.ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
