"""What ``vendor_throughput.py`` measured, and how it is shown: results, targets, report, JSON.

Kept apart from the bench's workers and orchestrator: this module only computes figures
from what the runs returned and formats them (text for people, JSON for tools).
"""

from __future__ import annotations

import io
import math
import os
import pstats
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

UNIT_VALUE: Final = 1
TARGET_RATE: Final = 28_000.0  # verified + durable payments/s at one vendor, 1 and 16 buyers
TARGET_RATIO: Final = 0.8  # of the raw one-way ceiling of the same client
TARGET_CPU_US: Final = 15.0  # vendor CPU per payment
TARGET_P99_MS: Final = 5.0  # payment -> covering receipt, at half the 1-buyer peak
PACED_SHARE: Final = 0.5  # the latency run's pace, as a share of the 1-buyer peak
CPU_FIGURES: Final = ("vendor_cpu_us", "load_cpu_us", "mosquitto_cpu_us")
DISTURBED_CORES: Final = 0.1  # other processes' CPU during a measurement worth a warning
PROBE_HASHES: Final = 100_000  # the CPU-speed probe: this many SHA-256 of 32 bytes


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted data."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    """The median, NaN for nothing."""
    return statistics.median(values) if values else float("nan")


# --- one measurement -------------------------------------------------------------------------


@dataclass
class Raw:
    """One raw-pipe run: the client under test subscribing, the fast client publishing."""

    mode: str
    window: int
    messages: int
    rate: float
    subscriber_cpu_us: float
    publisher_rate: float
    publisher_cpu_us: float
    mosquitto_cpu_us: float
    acks: int
    foreign_cores: float
    latency_p50_ms: float
    latency_p99_ms: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {k: round(v, 2) if isinstance(v, float) else v for k, v in vars(self).items()}


@dataclass
class Case:
    """One vendor run."""

    buyers: int
    load_processes: int
    window: int
    payments: int
    acknowledged: int
    seconds: float
    rate: float
    vendor_cpu_us: float
    vendor_main_us: float
    vendor_threads_us: float
    vendor_busy: float
    load_cpu_us: float
    mosquitto_cpu_us: float
    foreign_cores: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    receipts: int
    transactions: int
    store_wait_share: float
    store_wait_ms: float
    queued_per_wait: float
    rejected: int
    paid: int
    stored_total: int
    stored_chains: int
    broker_credited: int
    vendor_counted: int
    paced_rate: float = 0.0  # payments/s asked of the load; 0: as fast as the window allows
    errors: list[str] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        """Every payment acknowledged and stored once, nothing rejected, the broker agrees."""
        return (
            self.rejected == 0
            and not self.errors
            and self.acknowledged == self.payments
            and self.paid == self.payments * UNIT_VALUE
            and self.stored_total == self.paid
            and self.vendor_counted == self.paid
            and self.broker_credited == self.paid
        )

    @property
    def label(self) -> str:
        """The case's name in the tables."""
        if self.paced_rate:
            return f"{self.buyers} buyer{'s' if self.buyers > 1 else ''} at half peak"
        return f"{self.buyers} buyer{'s' if self.buyers > 1 else ''}"

    def as_dict(self, ceiling: float) -> dict[str, object]:
        """JSON-ready, with the ratio to the raw ceiling."""
        data: dict[str, object] = {
            k: round(v, 3) if isinstance(v, float) else v
            for k, v in vars(self).items()
            if k != "profile"
        }
        data["ratio"] = round(self.rate / ceiling, 3)
        data["consistent"] = self.consistent
        return data


@dataclass
class ClientRound:
    """One client's measurements in one round: vendor cases, the half-peak run, raw pipes."""

    client: str
    cases: list[Case]
    paced: Case | None
    raw: list[Raw]

    @property
    def ceiling(self) -> Raw:
        """The faster raw pipe of this round."""
        return max(self.raw, key=lambda r: r.rate)

    @property
    def every_case(self) -> list[Case]:
        """The vendor cases and the half-peak run."""
        return [*self.cases, *([self.paced] if self.paced else [])]


@dataclass
class Round:
    """Every client, measured back to back."""

    clients: list[ClientRound]
    probe_ms: list[float]


# --- over the rounds ---------------------------------------------------------------------------


@dataclass
class ClientResults:
    """One client over every round: medians."""

    client: str
    rounds: list[ClientRound]

    def cases(self, index: int) -> list[Case]:
        """One vendor case (by position) in every round."""
        return [r.cases[index] for r in self.rounds]

    def paced(self) -> list[Case]:
        """The half-peak run of every round that has one."""
        return [r.paced for r in self.rounds if r.paced is not None]

    def ratios(self, index: int) -> list[float]:
        """(b)/(a) of one vendor case in every round, against that round's ceiling."""
        return [r.cases[index].rate / r.ceiling.rate for r in self.rounds]

    def median(self, index: int, attribute: str) -> float:
        """The median of one figure of one vendor case over the rounds."""
        return median([float(getattr(c, attribute)) for c in self.cases(index)])

    def paced_median(self, attribute: str) -> float:
        """The median of one figure of the half-peak run."""
        return median([float(getattr(c, attribute)) for c in self.paced()])

    def raw_median(self, index: int, attribute: str) -> float:
        """The median of one figure of one raw mode over the rounds."""
        return median([float(getattr(r.raw[index], attribute)) for r in self.rounds])

    def ceiling_median(self, attribute: str) -> float:
        """The median of one figure of each round's ceiling (the faster raw pipe)."""
        return median([float(getattr(r.ceiling, attribute)) for r in self.rounds])

    @property
    def ceiling(self) -> float:
        """The median of the rounds' ceilings."""
        return self.ceiling_median("rate")

    @property
    def consistent(self) -> bool:
        """Every case of every round checked out."""
        return all(c.consistent for r in self.rounds for c in r.every_case)


@dataclass
class Results:
    """Every round of one run."""

    payload_size: int
    rounds: list[Round]

    @property
    def clients(self) -> list[ClientResults]:
        """Per client, in the order measured."""
        names = [c.client for c in self.rounds[0].clients]
        return [
            ClientResults(name, [c for r in self.rounds for c in r.clients if c.client == name])
            for name in names
        ]

    @property
    def consistent(self) -> bool:
        """Every case of every client and round checked out."""
        return all(c.consistent for c in self.clients)


# --- targets -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """One target for one client: what was asked, what was measured, PASS or SHORT."""

    client: str
    target: str
    measured: str
    passed: bool

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "client": self.client,
            "target": self.target,
            "measured": self.measured,
            "pass": self.passed,
        }


def verdicts(results: Results) -> list[Verdict]:
    """Every target, per client, against the medians."""
    found: list[Verdict] = []
    for client in results.clients:
        name = client.client

        def add(target: str, value: float, passed: bool, measured: str, who: str = name) -> None:
            if not math.isnan(value):
                found.append(Verdict(who, target, measured, passed))

        for index, case in enumerate(client.rounds[0].cases):
            rate = client.median(index, "rate")
            add(
                f"{case.label}: >= {TARGET_RATE:,.0f} payments/s",
                rate,
                rate >= TARGET_RATE,
                f"{rate:,.0f}/s",
            )
            ratio = median(client.ratios(index))
            add(
                f"{case.label}: >= {TARGET_RATIO} x raw one-way ceiling",
                ratio,
                ratio >= TARGET_RATIO,
                f"{ratio:.2f} x {client.ceiling:,.0f}",
            )
        cpu = max(client.median(i, "vendor_cpu_us") for i in range(len(client.rounds[0].cases)))
        add(
            f"vendor CPU <= {TARGET_CPU_US:.0f} us/payment (worst case)",
            cpu,
            cpu <= TARGET_CPU_US,
            f"{cpu:.1f} us",
        )
        if client.paced():
            p99 = client.paced_median("latency_p99_ms")
            add(
                f"p99 <= {TARGET_P99_MS:.0f} ms at half the 1-buyer peak",
                p99,
                p99 <= TARGET_P99_MS,
                f"{p99:.2f} ms at {client.paced_median('rate'):,.0f}/s",
            )
    return found


# --- text --------------------------------------------------------------------------------------


def columns(rows: list[tuple[str, list[str]]], indent: int = 4) -> list[str]:
    """A label column and one right-aligned column per case."""
    label = max(len(name) for name, _ in rows)
    width = max(len(cell) for _, cells in rows for cell in cells) + 3
    return [
        " " * indent + name.ljust(label) + "".join(cell.rjust(width) for cell in cells)
        for name, cells in rows
    ]


def table(header: list[str], rows: list[list[str]], indent: int = 4) -> list[str]:
    """A table: the first two columns left-aligned, the rest right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        out = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return " " * indent + "  ".join(out).rstrip()

    rule = " " * indent + "  ".join("-" * w for w in widths)
    return [line(header), rule, *(line(r) for r in rows)]


def spread(values: list[float], fmt: str) -> str:
    """Per-round values, for the rows that show them."""
    return " / ".join(format(v, fmt) for v in values)


def summary_rows(results: Results) -> list[list[str]]:
    """The side-by-side table: per client the raw ceiling, each vendor case, half peak."""
    rows: list[list[str]] = []
    for client in results.clients:
        rows.append(
            [
                client.client,
                "raw ceiling (a), one-way arrival",
                f"{client.ceiling:,.0f}",
                "1.00",
                f"{client.ceiling_median('subscriber_cpu_us'):.1f} (subscriber)",
                f"{client.ceiling_median('latency_p50_ms'):.2f}",
                f"{client.ceiling_median('latency_p99_ms'):.2f}",
            ]
        )
        for index, case in enumerate(client.rounds[0].cases):
            rows.append(
                [
                    client.client,
                    case.label,
                    f"{client.median(index, 'rate'):,.0f}",
                    f"{median(client.ratios(index)):.2f}",
                    f"{client.median(index, 'vendor_cpu_us'):.1f}",
                    f"{client.median(index, 'latency_p50_ms'):.2f}",
                    f"{client.median(index, 'latency_p99_ms'):.2f}",
                ]
            )
        if client.paced():
            asked = client.paced_median("paced_rate")
            rows.append(
                [
                    client.client,
                    f"1 buyer paced at {asked:,.0f}/s (half peak)",
                    f"{client.paced_median('rate'):,.0f}",
                    "",
                    f"{client.paced_median('vendor_cpu_us'):.1f}",
                    f"{client.paced_median('latency_p50_ms'):.2f}",
                    f"{client.paced_median('latency_p99_ms'):.2f}",
                ]
            )
    return rows


def raw_lines(client: ClientResults) -> list[str]:
    """(a): each raw mode, medians over the rounds."""
    lines: list[str] = []
    for index, raw in enumerate(client.rounds[0].raw):
        label = "one-way" if raw.mode == "one-way" else f"cumulative acks, window {raw.window}"
        rates = [r.raw[index].rate for r in client.rounds]
        each = f"  (rounds: {spread(rates, ',.0f')})" if len(rates) > 1 else ""
        lines.append(
            f"    {label:<27}{raw.messages:>8,} msgs {median(rates):>8,.0f} msg/s"
            f"   subscriber {client.raw_median(index, 'subscriber_cpu_us'):5.1f} us/msg CPU"
            f"   publisher {client.raw_median(index, 'publisher_cpu_us'):4.1f} us/msg"
            f"   mosquitto {client.raw_median(index, 'mosquitto_cpu_us'):4.1f} us/msg"
            f"   arrival p50/p99 {client.raw_median(index, 'latency_p50_ms'):.1f}"
            f"/{client.raw_median(index, 'latency_p99_ms'):.1f} ms"
            f"   others {client.raw_median(index, 'foreign_cores'):.2f} cores{each}"
        )
    return lines


def case_rows(client: ClientResults, cores: int) -> list[tuple[str, list[str]]]:
    """(b) to (e) and the CPU budget, one column per vendor case, medians over the rounds."""
    per_round: list[list[Case]] = [r.every_case for r in client.rounds]
    first = per_round[0]
    cols = range(len(first))

    def values(i: int, attribute: str) -> list[float]:
        return [float(getattr(cases[i], attribute)) for cases in per_round]

    def med(i: int, attribute: str) -> float:
        return median(values(i, attribute))

    def row(label: str, attribute: str, fmt: str) -> tuple[str, list[str]]:
        return label, [format(med(i, attribute), fmt) for i in cols]

    def ratios(i: int) -> list[float]:
        return [
            cases[i].rate / r.ceiling.rate
            for cases, r in zip(per_round, client.rounds, strict=True)
        ]

    subscriber = client.ceiling_median("subscriber_cpu_us")
    rows: list[tuple[str, list[str]]] = [
        ("case", [c.label for c in first]),
        (
            "load processes x buyers each",
            [f"{c.load_processes} x {math.ceil(c.buyers / c.load_processes)}" for c in first],
        ),
        ("window per buyer (in flight)", [f"{c.window} ({c.window * c.buyers})" for c in first]),
        ("payments per round", [f"{c.payments:,}" for c in first]),
        (
            "paced at (payments/s)",
            [f"{med(i, 'paced_rate'):,.0f}" if med(i, "paced_rate") else "-" for i in cols],
        ),
        row("seconds", "seconds", ".1f"),
        row("(b) payments/s", "rate", ",.0f"),
        ("(c) (b) / (a)", [f"{median(ratios(i)):.2f}" for i in cols]),
        row("(d) vendor CPU us/payment", "vendor_cpu_us", ".1f"),
        row("    event-loop thread", "vendor_main_us", ".1f"),
        row("    other threads (SQLite)", "vendor_threads_us", ".1f"),
        (
            "    above the raw subscriber",
            [f"{med(i, 'vendor_cpu_us') - subscriber:+.1f}" for i in cols],
        ),
        row("    vendor busy (cores)", "vendor_busy", ".2f"),
        row("(e) latency p50 ms", "latency_p50_ms", ".2f"),
        row("    p99 ms", "latency_p99_ms", ".2f"),
        row("    max ms", "latency_max_ms", ".1f"),
        row("receipts received", "receipts", ",.0f"),
        row("vendor store transactions", "transactions", ",.0f"),
        row("    a commit in progress", "store_wait_share", ".0%"),
        row("    ms per commit (awaited)", "store_wait_ms", ".2f"),
        row("    messages arrived meanwhile", "queued_per_wait", ".0f"),
        row("load CPU us/payment", "load_cpu_us", ".1f"),
        row("mosquitto CPU us/payment", "mosquitto_cpu_us", ".1f"),
        row("other processes (cores)", "foreign_cores", ".2f"),
        (
            f"CPU used / {cores} cores' budget us",
            [
                f"{sum(med(i, a) for a in CPU_FIGURES):.0f} / {cores * 1e6 / med(i, 'rate'):.0f}"
                for i in cols
            ],
        ),
    ]
    if len(per_round) > 1:
        rows += [
            ("(b) each round", [spread(values(i, "rate"), ",.0f") for i in cols]),
            ("(c) each round", [spread(ratios(i), ".2f") for i in cols]),
            ("(d) each round", [spread(values(i, "vendor_cpu_us"), ".0f") for i in cols]),
            ("p99 each round", [spread(values(i, "latency_p99_ms"), ".1f") for i in cols]),
        ]
    return rows


def check_lines(client: ClientResults) -> list[str]:
    """What the vendor stored against what the buyers paid, per case over all rounds."""
    lines: list[str] = []
    for index in range(len(client.rounds[0].every_case)):
        cases = [r.every_case[index] for r in client.rounds]
        ok = all(c.consistent for c in cases)
        lines.append(
            f"    {client.client}, {cases[0].label}: {sum(c.acknowledged for c in cases):,} of"
            f" {sum(c.payments for c in cases):,} payments verified and acknowledged,"
            f" {sum(c.rejected for c in cases)} rejected; buyers paid"
            f" {sum(c.paid for c in cases):,}; vendor store.db total"
            f" {sum(c.stored_total for c in cases):,} on"
            f" {sum(c.stored_chains for c in cases)} chain(s); vendor counted"
            f" {sum(c.vendor_counted for c in cases):,}; broker credited"
            f" {sum(c.broker_credited for c in cases):,} -> {'ok' if ok else 'FAILED'}"
        )
        lines.extend(f"      error: {e}" for c in cases for e in c.errors[:5])
    return lines


def disturbance(results: Results) -> list[str]:
    """A warning when other processes competed for the CPU during a measurement."""
    worst = max(
        [x.foreign_cores for r in results.rounds for c in r.clients for x in c.raw]
        + [x.foreign_cores for r in results.rounds for c in r.clients for x in c.every_case]
    )
    if worst < DISTURBED_CORES:
        return []
    return [
        (
            f"  WARNING: other processes used up to {worst:.2f} cores during a measurement;"
            " those figures are disturbed"
        )
    ]


def report(results: Results, info: dict[str, str], *, pinned: bool) -> str:
    """The figures, for people."""
    cores = len(os.sched_getaffinity(0))
    size = results.payload_size
    rounds = len(results.rounds)
    probes = [p for r in results.rounds for p in r.probe_ms]
    lines = [
        "vendor throughput: verified, durable payments at ONE vendor over a real Mosquitto",
        "  " + ", ".join(f"{k} {v}" for k, v in info.items()) + f"; {cores} cores"
        f"{' (vendor pinned alone on one)' if pinned else ''}; payment envelope {size} B",
        (
            f"  {rounds} round(s), medians shown; CPU-speed probe ({PROBE_HASHES:,} SHA-256)"
            f" {min(probes):.0f}-{max(probes):.0f} ms during the run (a wide range: noisy host)"
        ),
        (
            "  load generators (raw publisher, buyers) always use the mqtt5 client's"
            " publish_nowait; the client named is the vendor's and the raw subscriber's"
        ),
        *disturbance(results),
        "",
        "summary (client under test at the vendor and the raw subscriber; medians):",
        *table(
            [
                "client",
                "case",
                "payments/s",
                "(b)/(a)",
                "vendor CPU us/payment",
                "p50 ms",
                "p99 ms",
            ],
            summary_rows(results),
        ),
        "    (latency: payment -> covering receipt; for the raw ceiling, publish -> arrival)",
    ]
    for client in results.clients:
        lines += [
            "",
            (
                f"[{client.client}] (a) raw ceiling: plain {size}-B messages, QoS 1, 1 publisher"
                f" process -> 1 subscriber process reading through the {client.client} client"
            ),
            *raw_lines(client),
            f"    ceiling = the faster of the two: {client.ceiling:,.0f} msg/s",
            "",
            (
                f"[{client.client}] (b) verified + durable payments at one vendor, (c) ratio,"
                " (d) vendor CPU, (e) latency"
            ),
            *columns(case_rows(client, cores)),
        ]
    lines += ["", "checks:"]
    for client in results.clients:
        lines += check_lines(client)
    lines += ["", "targets:"]
    lines += [
        f"    {'PASS ' if v.passed else 'SHORT'}  {v.client:<8} {v.target:<48} {v.measured}"
        for v in verdicts(results)
    ]
    for client in results.clients:
        for round_ in client.rounds:
            for case in round_.every_case:
                if case.profile:
                    lines += ["", f"vendor profile, {client.client}, {case.label}:", *case.profile]
    return "\n".join(lines)


def to_json(results: Results, info: dict[str, str], *, pinned: bool) -> dict[str, object]:
    """Everything measured, as JSON-ready data (medians, and every round)."""

    def summary(client: ClientResults) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = [
            {
                "case": "raw ceiling",
                "rate": round(client.ceiling, 1),
                "subscriber_cpu_us": round(client.ceiling_median("subscriber_cpu_us"), 2),
                "latency_p50_ms": round(client.ceiling_median("latency_p50_ms"), 3),
                "latency_p99_ms": round(client.ceiling_median("latency_p99_ms"), 3),
            }
        ]
        for i, case in enumerate(client.rounds[0].cases):
            rows.append(
                {
                    "case": case.label,
                    "buyers": case.buyers,
                    "rate": round(client.median(i, "rate"), 1),
                    "ratio": round(median(client.ratios(i)), 3),
                    "vendor_cpu_us": round(client.median(i, "vendor_cpu_us"), 2),
                    "latency_p50_ms": round(client.median(i, "latency_p50_ms"), 3),
                    "latency_p99_ms": round(client.median(i, "latency_p99_ms"), 3),
                    "consistent": all(c.consistent for c in client.cases(i)),
                }
            )
        if client.paced():
            rows.append(
                {
                    "case": "1 buyer at half peak",
                    "buyers": 1,
                    "paced_rate": round(client.paced_median("paced_rate"), 1),
                    "rate": round(client.paced_median("rate"), 1),
                    "vendor_cpu_us": round(client.paced_median("vendor_cpu_us"), 2),
                    "latency_p50_ms": round(client.paced_median("latency_p50_ms"), 3),
                    "latency_p99_ms": round(client.paced_median("latency_p99_ms"), 3),
                    "consistent": all(c.consistent for c in client.paced()),
                }
            )
        return rows

    return {
        "versions": info,
        "cores": len(os.sched_getaffinity(0)),
        "pinned": pinned,
        "payload_size": results.payload_size,
        "clients": {c.client: summary(c) for c in results.clients},
        "targets": {
            "rate": TARGET_RATE,
            "ratio": TARGET_RATIO,
            "vendor_cpu_us": TARGET_CPU_US,
            "p99_ms_at_half_peak": TARGET_P99_MS,
        },
        "verdicts": [v.as_dict() for v in verdicts(results)],
        "consistent": results.consistent,
        "rounds": [
            {
                "probe_ms": [round(p, 1) for p in r.probe_ms],
                "clients": {
                    c.client: {
                        "ceiling": round(c.ceiling.rate, 1),
                        "raw": [x.as_dict() for x in c.raw],
                        "cases": [x.as_dict(c.ceiling.rate) for x in c.every_case],
                        "profiles": {x.label: x.profile for x in c.every_case if x.profile},
                    }
                    for c in r.clients
                },
            }
            for r in results.rounds
        ],
    }


# --- profiles ----------------------------------------------------------------------------------

IDLE_FRAMES: Final = ("EpollSelector.select", "_worker (concurrent/futures/thread.py")
PROFILE_BUCKETS: Final = (
    (("agent_store.py",), "AgentStore.record (grouping rows; hand-off to its thread)"),
    (("data_to_send", "seal (protocol/envelope.py"), "receipts: VendorCore.data_to_send (seal)"),
    (("_publish_one", "_publish (agents/runtime/loop.py"), "receipts: AgentLoop publish tasks"),
    (("protocol/vendor.py", "protocol/endpoint.py", "protocol/envelope.py", "protocol/"), "core"),
    (("data_received (agents/runtime/mqtt5_link.py",), "mqtt5: parse packets (data_received)"),
    (("mqtt5_link.py",), "mqtt5: inbox, PUBACKs, publish"),
    (("paho/",), "paho: read, decode, PUBACK writes"),
    (("aiomqtt",), "aiomqtt: iterator, publish"),
    (("_read (agents/runtime/loop.py",), "AgentLoop._read (lock, counters, batching)"),
    (("agents/runtime/loop.py",), "AgentLoop committer, timers"),
)


def profile_bucket(stack: str) -> str:
    """Which part of the vendor's event-loop thread a py-spy stack belongs to."""
    for needles, name in PROFILE_BUCKETS:
        if any(needle in stack for needle in needles):
            return "VendorCore.receive and the envelope" if name == "core" else name
    return "asyncio loop (callbacks, selector, transports' send/recv)"


def summarize_py_spy(path: Path, main_us: float, main_thread: Callable[[str], bool]) -> list[str]:
    """Shares of the event-loop thread's busy samples, turned into us per payment."""
    buckets: dict[str, int] = {}
    leaves: dict[str, int] = {}
    innermost: dict[str, int] = {}
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or not main_thread(frames[0]):
            continue
        if frames[-1].startswith(IDLE_FRAMES):
            continue
        samples = int(count)
        busy += samples
        bucket = profile_bucket(stack)
        buckets[bucket] = buckets.get(bucket, 0) + samples
        leaves[frames[-1]] = leaves.get(frames[-1], 0) + samples
        ours = [f for f in frames if "/micropay/" in f or "agents/" in f or "protocol/" in f]
        if ours:
            innermost[ours[-1]] = innermost.get(ours[-1], 0) + samples
    if not busy:
        return ["    (no samples)"]
    lines = [f"    event-loop thread, {busy:,} busy samples, {main_us:.1f} us/payment in all:"]
    for name, samples in sorted(buckets.items(), key=lambda item: -item[1]):
        share = samples / busy
        lines.append(f"      {share:6.1%} {share * main_us:6.1f} us  {name}")
    lines.append("    hottest functions (own time):")
    for name, samples in sorted(leaves.items(), key=lambda item: -item[1])[:15]:
        lines.append(f"      {samples / busy:6.1%}  {name}")
    lines.append("    innermost project frame (own time and what it calls):")
    for name, samples in sorted(innermost.items(), key=lambda item: -item[1])[:12]:
        lines.append(f"      {samples / busy:6.1%}  {name}")
    return lines


def summarize_cprofile(path: Path, top: int = 20) -> list[str]:
    """The vendor's hottest functions by own time (cProfile inflates small calls)."""
    sink = io.StringIO()
    stats = pstats.Stats(str(path), stream=sink)
    stats.sort_stats("tottime").print_stats(top)
    return ["    " + line for line in sink.getvalue().splitlines() if line.strip()]
