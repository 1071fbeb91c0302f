"""Durable appends per second to the broker's event store, on a real SQLite file.

The store's own defaults (WAL, ``synchronous=FULL``, every commit's head signed in its own
transaction, as the broker runs it) on a temporary directory on the same disk as the
repository, never ``/dev/shm``. Each case runs twice in a row, signed and without a signer,
so the cost of signing every commit is a ratio from one run. Three ways to append the same
realistic ``PaywordsRedeemed`` events (real certificates, commitments and paywords; about
530-byte bodies):

- single: one ``append`` awaited at a time, so one transaction and one fsync per event;
- grouped: ``append_events`` calls of 100 and of 1,000 events, one transaction each;
- concurrent: many single-event ``append`` calls in flight at once, which the store's group
  commit folds into few transactions (``store.transactions`` counts them).

Each case writes a fresh ledger file; events are built before the clock starts, so the
figures cover encoding, hashing, SQLite and fsync.

Run: ``uv run --frozen python bench/ledger_append.py [--quick] [--json] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Final

from broker_ledger.codec import DEFAULT_CODEC
from broker_ledger.store import EventStore
from protocol.broker_events import PaywordsRedeemed, stream_of
from protocol.chain import HashChain
from protocol.credentials import sign_commitment
from protocol.crypto import Identity
from tests.support.forgery import certificate, commitment
from tests.support.world import seeded_identity

REPO: Final = Path(__file__).resolve().parent.parent
BROKER: Final = "broker"
T0_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS: Final = 86_400_000
CHAIN_LENGTH: Final = 2_000
MAX_STEP: Final = 10
TARGET_GROUPED: Final = 50_000


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each case appends; ``--quick`` shrinks everything for smoke tests."""

    single: int
    batch100_calls: int
    batch1000_calls: int
    gathered: int
    gathered_rounds: int
    appenders: int
    appends_each: int
    streams: int
    fsyncs: int


FULL = Sizes(
    single=2_000,
    batch100_calls=500,
    batch1000_calls=100,
    gathered=1_000,
    gathered_rounds=50,
    appenders=1_000,
    appends_each=50,
    streams=1_000,
    fsyncs=500,
)
QUICK = Sizes(
    single=100,
    batch100_calls=20,
    batch1000_calls=5,
    gathered=1_000,
    gathered_rounds=3,
    appenders=200,
    appends_each=5,
    streams=100,
    fsyncs=50,
)


# --- realistic events -----------------------------------------------------------------------


@dataclass(slots=True)
class OpenChain:
    """One buyer's commitment to one vendor, redeemed a few units at a time."""

    commitment_id: bytes
    buyer: str
    vendor: str
    signed: bytes
    unit_value: int
    chain: HashChain
    index: int = 0


@dataclass(slots=True)
class EventSource:
    """Redemptions as the broker records them, round-robin over ``streams`` commitments."""

    broker: Identity
    streams: int
    rng: random.Random = field(default_factory=lambda: random.Random(2026))
    chains: list[OpenChain] = field(default_factory=list)
    made: int = 0
    at: int = T0_MS

    def _open(self, number: int) -> OpenChain:
        buyer_name, vendor = f"buyer-{number % 500:05d}", f"vendor-{number % 50:03d}"
        buyer = seeded_identity(buyer_name)
        certified = certificate(
            self.broker, buyer, buyer_name, T0_MS, T0_MS + 365 * DAY_MS,
            serial=1 + number % 500, credit_limit=10**12, issuer_id=BROKER,
        )  # fmt: skip
        chain = HashChain(self.rng.randbytes(32), CHAIN_LENGTH)
        unit_value = 1 + number % 7
        signed, commitment_id = sign_commitment(
            buyer,
            commitment(
                vendor, certified, T0_MS, T0_MS + 30 * DAY_MS,
                root=chain.root, length=CHAIN_LENGTH, unit_value=unit_value,
            ),
        )  # fmt: skip
        return OpenChain(commitment_id, buyer_name, vendor, signed, unit_value, chain)

    def take(self, count: int) -> list[PaywordsRedeemed]:
        """The next ``count`` redemptions, each 1..10 units further along its chain."""
        out: list[PaywordsRedeemed] = []
        while len(out) < count:
            slot = self.made % self.streams
            if slot == len(self.chains):
                self.chains.append(self._open(slot))
            state = self.chains[slot]
            units = self.rng.randint(1, MAX_STEP)
            if state.index + units > CHAIN_LENGTH:
                state = self.chains[slot] = self._open(slot + self.made)
            self.at += 1
            out.append(
                PaywordsRedeemed(
                    at=self.at,
                    commitment_id=state.commitment_id,
                    buyer=state.buyer,
                    vendor=state.vendor,
                    commitment=state.signed,
                    from_index=state.index,
                    index=state.index + units,
                    payword=state.chain.word(state.index + units),
                    units=units,
                    amount=units * state.unit_value,
                )
            )
            state.index += units
            self.made += 1
        return out


# --- the disk -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mount:
    """The /proc/mounts line of the filesystem holding a path."""

    device: str
    mountpoint: str
    fstype: str
    options: str


def mount_of(path: Path) -> Mount:
    """The longest mount point that contains ``path``."""
    best = Mount("?", "/", "?", "")
    target = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 4:
                continue
            point = parts[1].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best.mountpoint):
                best = Mount(parts[0], point, parts[2], parts[3])
    return best


def work_dir(requested: str | None) -> Path:
    """A fresh directory on the repository's disk (the system temp dir if it is on it)."""
    if requested is not None:
        base = Path(requested)
    else:
        system = Path(tempfile.gettempdir())
        same_disk = system.stat().st_dev == REPO.stat().st_dev
        base = system if same_disk and mount_of(system).fstype != "tmpfs" else REPO / "bench"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="micropay-append-", dir=base))


def fsync_ms(directory: Path, count: int) -> float:
    """Milliseconds per 4 KiB write + fsync on this disk: the floor of one durable commit."""
    probe = directory / "fsync-probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        start = time.perf_counter()
        for _ in range(count):
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        return (time.perf_counter() - start) / count * 1000
    finally:
        os.close(fd)
        probe.unlink()


# --- the cases ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """One case: events durably appended, wall time, transactions the store committed."""

    name: str
    events: int
    seconds: float
    transactions: int
    calls: int
    signed: bool = True

    @property
    def per_second(self) -> float:
        """Durable events per second."""
        return self.events / self.seconds

    def as_dict(self) -> dict[str, object]:
        """Flat record for ``--json``."""
        return {
            "case": self.name,
            "signed": self.signed,
            "events": self.events,
            "calls": self.calls,
            "seconds": round(self.seconds, 4),
            "events_per_s": round(self.per_second, 1),
            "transactions": self.transactions,
            "events_per_transaction": round(self.events / max(self.transactions, 1), 1),
            "us_per_event": round(self.seconds / self.events * 1e6, 2),
        }


Runner = Callable[[EventStore], Awaitable[int]]


class Bench:
    """Runs each case on a fresh ledger file in one directory."""

    def __init__(self, directory: Path, broker: Identity, source: EventSource) -> None:
        self.directory = directory
        self.broker = broker
        self.source = source
        self.settings: dict[str, str] = {}
        self.signed = True
        self._files = 0

    async def case(self, name: str, events: int, calls: int, runner: Runner) -> Result:
        """Open a fresh store, time ``runner``, check every event landed, close."""
        self._files += 1
        path = self.directory / f"case{self._files}.db"
        store = await EventStore.open(path, BROKER, signer=self.broker if self.signed else None)
        try:
            if not self.settings:
                self.settings = await pragmas(store)
            start = time.perf_counter()
            appended = await runner(store)
            seconds = time.perf_counter() - start
            transactions = store.transactions
            if appended != events or store.head[0] != events:
                raise RuntimeError(f"{name}: {appended} appended, head at {store.head[0]}")
        finally:
            await store.close()
        remove_ledger(path)
        return Result(name, events, seconds, transactions, calls, self.signed)

    async def single(self, count: int) -> Result:
        """One event per ``append``, each awaited before the next."""
        events = self.source.take(count)

        async def run(store: EventStore) -> int:
            for event in events:
                await store.append(stream_of(event), [event])
            return len(events)

        return await self.case("single: 1 event per append, awaited", count, count, run)

    async def grouped(self, size: int, calls: int) -> Result:
        """``append_events`` of ``size`` events at a time (mixed streams), each awaited."""
        batches = [self.source.take(size) for _ in range(calls)]

        async def run(store: EventStore) -> int:
            total = 0
            for batch in batches:
                total += len(await store.append_events(batch))
            return total

        name = f"grouped: append_events of {size:,} events"
        return await self.case(name, size * calls, calls, run)

    async def gathered(self, count: int, rounds: int) -> Result:
        """``count`` single-event ``append`` calls started at once, ``rounds`` times."""
        waves = [[(stream_of(e), e) for e in self.source.take(count)] for _ in range(rounds)]

        async def run(store: EventStore) -> int:
            total = 0
            for wave in waves:
                done = await asyncio.gather(*(store.append(s, [e]) for s, e in wave))
                total += sum(len(rows) for rows in done)
            return total

        name = f"concurrent: {count:,} appends gathered, x{rounds}"
        return await self.case(name, count * rounds, count * rounds, run)

    async def appenders(self, tasks: int, each: int) -> Result:
        """``tasks`` concurrent appenders, each awaiting ``each`` single appends in turn."""
        work = [[(stream_of(e), e) for e in self.source.take(each)] for _ in range(tasks)]

        async def run(store: EventStore) -> int:
            async def appender(events: list[tuple[str, PaywordsRedeemed]]) -> int:
                total = 0
                for stream, event in events:
                    total += len(await store.append(stream, [event]))
                return total

            return sum(await asyncio.gather(*(appender(events) for events in work)))

        name = f"concurrent: {tasks:,} appenders x {each} awaited"
        return await self.case(name, tasks * each, tasks * each, run)


def remove_ledger(path: Path) -> None:
    """Delete a ledger file and its WAL companions."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def pragmas(store: EventStore) -> dict[str, str]:
    """What durability the store really runs with."""
    out: dict[str, str] = {}
    names = {"synchronous": ("OFF", "NORMAL", "FULL", "EXTRA")}
    for pragma in ("journal_mode", "synchronous", "wal_autocheckpoint", "page_size"):
        async with store.connection.execute(f"PRAGMA {pragma}") as cursor:
            row = await cursor.fetchone()
        value = "" if row is None else str(row[0])
        if pragma in names and value.isdigit():
            value = names[pragma][int(value)]
        out[pragma] = value
    return out


def sample_sizes(source: EventSource) -> dict[str, int]:
    """Bytes of one redemption: its commitment blob, its body, and the whole stored row."""
    (event,) = EventSource(source.broker, 1).take(1)
    name, _, body = DEFAULT_CODEC.encode(event)
    stream = stream_of(event)
    row = len(body) + len(stream) + len(name) + 32 + 4 * 8
    return {"commitment_blob": len(event.commitment), "body": len(body), "row_approx": row}


async def run(
    sizes: Sizes, directory: Path, progress: Callable[[str], None]
) -> tuple[list[Result], dict[str, str]]:
    """Every case, in order, and the SQLite settings they ran with."""
    broker = seeded_identity(BROKER)
    bench = Bench(directory, broker, EventSource(broker, sizes.streams))
    bench.source.take(sizes.streams)  # open (sign) every commitment before any timing
    results = []

    async def both(case: Callable[[], Awaitable[Result]]) -> None:
        for signed in (True, False):  # back to back, so the ratio is from one run
            bench.signed = signed
            results.append(await case())

    progress(f"single appends ({sizes.single:,})")
    await both(lambda: bench.single(sizes.single))
    for size, calls in ((100, sizes.batch100_calls), (1_000, sizes.batch1000_calls)):
        progress(f"append_events of {size:,} x {calls}")
        await both(lambda size=size, calls=calls: bench.grouped(size, calls))  # type: ignore[misc]
    progress(f"{sizes.gathered:,} gathered appends x {sizes.gathered_rounds}")
    await both(lambda: bench.gathered(sizes.gathered, sizes.gathered_rounds))
    progress(f"{sizes.appenders:,} appenders x {sizes.appends_each}")
    await both(lambda: bench.appenders(sizes.appenders, sizes.appends_each))
    return results, bench.settings


def versions() -> dict[str, object]:
    """Where the figures were taken."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity) if affinity is not None else os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": metadata.version("aiosqlite"),
        "msgspec": metadata.version("msgspec"),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--dir",
        help="directory for the ledger files (default: the system temp dir if it is on the"
        " repository's disk and not tmpfs, else bench/)",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    def progress(stage: str) -> None:
        print(f"... {stage}", file=sys.stderr, flush=True)

    directory = work_dir(args.dir)
    try:
        mount = mount_of(directory)
        same_disk = directory.stat().st_dev == REPO.stat().st_dev
        progress("fsync probe")
        fsync = fsync_ms(directory, sizes.fsyncs)
        results, settings = asyncio.run(run(sizes, directory, progress))
        shape = sample_sizes(EventSource(seeded_identity(BROKER), 1))
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    signed = [r for r in results if r.signed]
    unsigned = {r.name: r for r in results if not r.signed}
    single = signed[0].per_second
    grouped = {r.name: r for r in signed[1:3]}
    best_grouped = max(r.per_second for r in grouped.values())
    info = versions()
    if args.json:
        report = {
            **info,
            "mode": "quick" if args.quick else "full",
            "directory": str(directory),
            "same_disk_as_repo": same_disk,
            "filesystem": vars_of(mount),
            "sqlite_settings": settings,
            "fsync_ms": round(fsync, 4),
            "event_bytes": shape,
            "results": [r.as_dict() for r in results],
            "ratio_grouped_over_single": {
                name: round(r.per_second / single, 1) for name, r in grouped.items()
            },
            "ratio_signed_over_unsigned": {
                r.name: round(r.per_second / unsigned[r.name].per_second, 3) for r in signed
            },
            "target_grouped_events_per_s": TARGET_GROUPED,
            "target_met": best_grouped >= TARGET_GROUPED,
        }
        print(json.dumps(report, indent=2))
        return 0
    pragma_text = ", ".join(f"{k}={v}" for k, v in settings.items())
    lines = [
        (
            f"Python {info['python']} on {info['platform']}, {info['cpu_count']} CPUs"
            f" ({info['cpus_usable']} usable); SQLite {info['sqlite']},"
            f" aiosqlite {info['aiosqlite']}, msgspec {info['msgspec']}"
        ),
        (
            f"ledger files in {directory}"
            f" ({'same disk as the repository' if same_disk else 'NOT the repository disk'},"
            " not /dev/shm; removed afterwards)"
        ),
        f"filesystem: {mount.device} on {mount.mountpoint} type {mount.fstype} ({mount.options})",
        f"SQLite: {pragma_text}; a fresh file per case; signed: every commit's head signed",
        f"raw 4 KiB write + fsync on this disk: {fsync:.3f} ms",
        (
            f"events: PaywordsRedeemed with a {shape['commitment_blob']} B commitment blob,"
            f" {shape['body']} B body, ~{shape['row_approx']} B row"
        ),
        "",
        (
            f"  {'case':<48}{'signed':>7}{'events':>9}{'txns':>8}{'ev/txn':>8}{'seconds':>9}"
            f"{'events/s':>11}"
        ),
    ]
    for r in results:
        per_txn = r.events / max(r.transactions, 1)
        lines.append(
            f"  {r.name:<48}{'yes' if r.signed else 'no':>7}{r.events:>9,}{r.transactions:>8,}"
            f"{per_txn:>8,.0f}{r.seconds:>9.3f}{r.per_second:>11,.0f}"
        )
    lines.append("")
    lines.extend(
        f"signing every commit, {r.name}: {r.per_second / unsigned[r.name].per_second:.3f}x"
        " the unsigned rate"
        for r in signed
    )
    lines.append("")
    for name, r in grouped.items():
        lines.append(
            f"ratio {name.removeprefix('grouped: ')} / single: {r.per_second / single:.1f}x"
        )
    verdict = "met" if best_grouped >= TARGET_GROUPED else "NOT met"
    lines.append(
        f"target >= {TARGET_GROUPED:,} durable events/s grouped: {verdict}"
        f" (best {best_grouped:,.0f}/s)"
    )
    print("\n".join(lines))
    return 0


def vars_of(mount: Mount) -> dict[str, str]:
    """A mount as a plain dict."""
    return {
        "device": mount.device,
        "mountpoint": mount.mountpoint,
        "fstype": mount.fstype,
        "options": mount.options,
    }


if __name__ == "__main__":
    sys.exit(main())
