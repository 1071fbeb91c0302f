"""New commitments per second at the broker: its core alone, and through its ledger.

A new commitment is a buyer's signed chain commitment the broker has not seen before. It
arrives in a vendor's ``register`` (an on-line vendor asks for approval, PROTOCOL.md 11.5)
or in the first ``redeem`` of an off-line chain (11.8). Either way the broker checks two
Ed25519 signatures, the broker's own on the buyer's certificate (cached by its exact bytes,
so paid once per buyer, ``credentials.CERTIFICATES``) and the buyer's on the commitment
(once per commitment), then records ``CommitmentRegistered`` (a first redemption also
``PaywordsRedeemed``) and replies.

Measured, each as the median per commitment over several runs after an untimed warm-up
run that checks every commitment was registered and answered:

- breakdown: ``crypto.verify_signature`` over the very certificates and commitments, and
  the core's work with both signatures already cached (the registration alone);
- core: ``BrokerCore.receive`` of pre-built envelopes (sans-I/O, one thread, GC off while
  timing), from a broker rebuilt from a ledger that holds the accounts but none of these
  commitments: a known buyer (certificate verified before: one Ed25519 check each) and new
  buyers (never seen: two);
- end to end: the same envelopes through the real ``BrokerService``: its ``EventStore``
  (SQLite WAL, ``synchronous=FULL``, every commit's head signed) in a fresh directory on the
  repository's disk, batches of 512 received, persisted, and their held replies sealed with
  the signed head, by a committer task as ``AgentLoop`` does; the daemon's INFO line per
  decision is formatted and written to /dev/null (and, once more, not at all). GC on, as
  in the daemon, with the benchmark's own world frozen out of it.

Each case reports wall-clock and CPU time (every thread) per commitment. On a shared
machine the CPU figure is the one to read: per CPU second is what one whole core does.

The process is pinned to one CPU (``--all-cpus`` lifts it), so SQLite's thread shares the
core with the event loop: the figures are for one core. Every case runs with each Ed25519
verifier: ``libsodium`` is ``protocol.crypto.verify_signature`` as shipped (PyNaCl first,
OpenSSL asked only about what libsodium refuses) and ``openssl`` is OpenSSL alone (through
``cryptography``), as before PyNaCl.

Run: ``uv run --frozen python bench/broker_commitments.py [--quick] [--json] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final, Literal

from agents.daemons.broker_files import BrokerFiles
from agents.daemons.broker_service import BrokerService
from agents.runtime.datadir_lock import DataDirLock
from agents.runtime.gc_tuning import tune_for_daemon
from agents.runtime.log_setup import TextFormatter
from broker_ledger.store import EventStore
from protocol import credentials, crypto, topics
from protocol.broker import BrokerCore
from protocol.broker_events import AnyBrokerEvent, CommitmentRegistered
from protocol.buyer import BuyerCore
from protocol.codec import decode_certificate, decode_commitment, decode_signed
from protocol.crypto import TAG_CERTIFICATE, TAG_COMMITMENT, AgentKeys
from protocol.envelope import Auth
from protocol.events import BrokerCoreEvent, HeldReply, MessageRejected
from protocol.messages import Body, OfferItem, Redeem, Register
from protocol.vendor import VendorCore, VendorTerms
from tests.support.world import SeededRandom, World, make_world, seeded_identity

REPO: Final = Path(__file__).resolve().parent.parent
BROKER: Final = "broker"
VENDOR: Final = "vendor1"
CREDIT: Final = 10**15  # no buyer nears its limit: every commitment is approved
LENGTH: Final = 100  # paywords per chain
TARGET: Final = 8_000  # new commitments per second on one core
Verifier = Literal["libsodium", "openssl"]
Kind = Literal["register", "redeem"]
VERIFIERS: Final[tuple[Verifier, ...]] = ("libsodium", "openssl")


@dataclass(frozen=True, slots=True)
class Sizes:
    """Commitments per timed run; ``--quick`` shrinks them for smoke tests."""

    runs: int
    commitments: int
    buyers: int
    new_buyers: int
    batch: int


FULL = Sizes(runs=5, commitments=4_096, buyers=64, new_buyers=512, batch=512)
QUICK = Sizes(runs=3, commitments=256, buyers=8, new_buyers=32, batch=64)


@dataclass(frozen=True, slots=True)
class Result:
    """One case: the median time per commitment over the runs, and its spread."""

    group: str
    name: str
    verifier: Verifier
    us: float
    min_us: float
    max_us: float
    cpu_us: float
    count: int
    runs: int

    @property
    def per_second(self) -> float:
        """Commitments (or checks) per second of wall-clock time, at the median."""
        return 1e6 / self.us

    @property
    def per_cpu_second(self) -> float:
        """Commitments (or checks) per second of CPU time: what one whole core does."""
        return 1e6 / self.cpu_us

    def as_dict(self) -> dict[str, object]:
        """Flat record for ``--json``."""
        return {
            "group": self.group,
            "name": self.name,
            "verifier": self.verifier,
            "us_per_commitment": round(self.us, 2),
            "per_second": round(self.per_second, 1),
            "min_us": round(self.min_us, 2),
            "max_us": round(self.max_us, 2),
            "cpu_us_per_commitment": round(self.cpu_us, 2),
            "per_cpu_second": round(self.per_cpu_second, 1),
            "count_per_run": self.count,
            "runs": self.runs,
        }


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run: wall and CPU nanoseconds for ``count`` operations."""

    wall_ns: int
    cpu_ns: int
    count: int


def summarize(
    group: str, name: str, verifier: Verifier, samples: list[Sample], runs: int
) -> Result:
    """Median and spread of the per-commitment wall time, and the median CPU time."""
    per_op = [s.wall_ns / s.count / 1000 for s in samples]
    cpu_us = statistics.median(s.cpu_ns / s.count / 1000 for s in samples)
    count = samples[0].count
    return Result(
        group, name, verifier, statistics.median(per_op), min(per_op), max(per_op), cpu_us,
        count, runs,
    )  # fmt: skip


def libsodium_absent(sign_key: bytes, message: bytes, signature: bytes) -> bool:
    """Stands in for ``crypto.libsodium_verifies``: every signature goes to OpenSSL."""
    del sign_key, message, signature
    return False


@contextlib.contextmanager
def verifier_in_use(name: Verifier) -> Iterator[None]:
    """Run with libsodium first (as shipped) or with OpenSSL alone (as before PyNaCl)."""
    if name == "libsodium":
        yield
        return
    shipped = crypto.libsodium_verifies
    crypto.libsodium_verifies = libsodium_absent
    try:
        yield
    finally:
        crypto.libsodium_verifies = shipped


def forget_signatures() -> None:
    """Forget every verified certificate and commitment in this process."""
    credentials.CERTIFICATES.clear()
    credentials.COMMITMENTS.clear()


# --- the envelopes ---------------------------------------------------------------------------


@dataclass(slots=True)
class Load:
    """Pre-built envelopes from the vendor to the broker, each naming a new commitment."""

    kind: Kind
    payloads: list[bytes]
    commitments: list[bytes]  # the Signed bytes, in the same order
    certificates: list[bytes]  # the buyers' certificates (Signed bytes), each once


class Setting:
    """The enrolled world (one broker, one vendor) and the ledger that holds its accounts."""

    def __init__(self, sizes: Sizes, keys: Callable[[str], AgentKeys] = seeded_identity) -> None:
        self.keys = keys
        self.world: World = make_world(vendors=0, buyers=0, keys=keys)
        self.now = self.world.now
        terms = VendorTerms(
            unit_value=1,
            currency="EUR",
            max_length=1_000_000,
            max_jump=100,
            items=(OfferItem("article", 5),),
        )
        self.vendor: VendorCore = self.world.enroll_vendor(VENDOR, terms)
        self.buyers = [self.world.enroll_buyer(f"buyer{n}", CREDIT) for n in range(sizes.buyers)]
        self.new_buyers = [
            self.world.enroll_buyer(f"new{n}", CREDIT) for n in range(sizes.new_buyers)
        ]
        self.history: list[AnyBrokerEvent] = self.world.net.ledger_events(BROKER)
        self.topic = topics.inbox(BROKER, VENDOR)

    def load(self, kind: Kind, buyers: Sequence[BuyerCore], count: int) -> Load:
        """``count`` new commitments round-robin over ``buyers``, in vendor envelopes."""
        payloads, commitments = [], []
        vendor, now = self.vendor, self.now
        for n in range(count):
            buyer = buyers[n % len(buyers)]
            opened = buyer.open_channel(VENDOR, LENGTH, now)
            buyer.data_to_send()  # the commit to the vendor: not part of this benchmark
            channel = buyer.channels[opened.commitment_id]
            body: Body = (
                Register(channel.commitment)
                if kind == "register"
                else Redeem(channel.commitment, 1, channel.chain.word(1))
            )
            corr = opened.commitment_id[:16]
            vendor.send(BROKER, body, now, auth=Auth.PAIR, key=vendor.broker_key, corr=corr)
            (out,) = vendor.data_to_send()
            payloads.append(out.payload)
            commitments.append(channel.commitment)
        certificates = list(dict.fromkeys(buyer.certificate for buyer in buyers))
        return Load(kind, payloads, commitments, certificates)

    def fresh_core(self) -> BrokerCore:
        """A broker rebuilt from the ledger, its MAC key with the vendor already derived."""
        core = BrokerCore(
            BROKER, self.keys(BROKER), random=SeededRandom(BROKER), attest_replies=True
        )
        core.rebuild(self.history)
        core.pair_key_with(VENDOR, self.vendor.identity.agree_key)
        return core


def check_registered(core: BrokerCore, load: Load, events: Sequence[object], replies: int) -> None:
    """Every commitment of the load was registered, nothing refused, each one answered."""
    refused = [event for event in events if isinstance(event, MessageRejected)]
    registered = sum(isinstance(event, CommitmentRegistered) for event in events)
    count = len(load.payloads)
    if refused or registered != count or replies != count:
        raise RuntimeError(
            f"{load.kind}: {registered}/{count} registered, {replies} replies; {refused[:1]}"
        )
    last = credentials.commitment_id(decode_signed(load.commitments[-1]).body)
    if last not in core.chains:
        raise RuntimeError(f"{load.kind}: the last commitment is not in the books")


# --- timing ---------------------------------------------------------------------------------


def timed(loop: Callable[[], None], count: int, *, collect: bool) -> Sample:
    """Wall and CPU time of ``loop``; the garbage collector held off unless ``collect``."""
    gc.collect()
    if not collect:
        gc.disable()
    try:
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        loop()
        return Sample(time.perf_counter_ns() - wall, time.process_time_ns() - cpu, count)
    finally:
        gc.enable()


def measure_core(
    setting: Setting, load: Load, runs: int, warm: Literal["none", "certificates", "all"]
) -> list[Sample]:
    """``BrokerCore.receive`` of every envelope; ``warm`` says which signatures are cached."""
    samples: list[Sample] = []
    topic, now = setting.topic, setting.now
    broker_key = setting.world.broker.info.sign_key
    for run in range(runs + 1):  # the first run is the checked warm-up
        core = setting.fresh_core()
        if warm != "all" or run == 0:
            forget_signatures()
        if warm == "certificates":
            for certificate in load.certificates:
                credentials.CERTIFICATES.get(certificate, broker_key)
        receive = core.receive
        if run == 0:
            events = [e for payload in load.payloads for e in receive(topic, payload, now)]
            check_registered(core, load, events, len(core.held_replies()))
            continue

        def loop(receive: Callable[..., object] = receive) -> None:
            for payload in load.payloads:
                receive(topic, payload, now)

        samples.append(timed(loop, len(load.payloads), collect=False))
    return samples


def measure_checks(broker_key: bytes, load: Load, runs: int) -> tuple[list[Sample], list[Sample]]:
    """``verify_signature`` alone over the load's certificates and commitments."""
    certificates = []
    for signed_bytes in load.certificates:
        signed = decode_signed(signed_bytes)
        certificates.append((broker_key, signed.body, signed.signature))
    commitments = []
    for signed_bytes in load.commitments:
        signed = decode_signed(signed_bytes)
        buyer = decode_certificate(
            decode_signed(decode_commitment(signed.body).buyer_certificate).body
        )
        commitments.append((buyer.sign_key, signed.body, signed.signature))
    verify = crypto.verify_signature

    def check(items: list[tuple[bytes, bytes, bytes]], tag: bytes) -> Callable[[], None]:
        def loop() -> None:
            for key, body, signature in items:
                verify(key, tag, body, signature)

        return loop

    out: tuple[list[Sample], list[Sample]] = ([], [])
    for items, tag, samples in (
        (certificates, TAG_CERTIFICATE, out[0]),
        (commitments, TAG_COMMITMENT, out[1]),
    ):
        check(items, tag)()  # warm-up, and every signature verifies
        samples.extend(timed(check(items, tag), len(items), collect=False) for _ in range(runs))
    return out


# --- end to end: the broker service and its ledger --------------------------------------------


def log_decisions_to_null(*, log: bool = True) -> None:
    """The daemon's log: INFO, one formatted line per decision, here written to /dev/null.

    Without ``log``, WARNING: the decision lines are not even formatted.
    """
    handler = logging.StreamHandler(Path(os.devnull).open("w", encoding="utf-8"))  # noqa: SIM115
    handler.setFormatter(TextFormatter())
    level = logging.INFO if log else logging.WARNING
    logging.basicConfig(level=level, handlers=[handler], force=True)


async def open_service(setting: Setting, directory: Path) -> BrokerService:
    """A ``BrokerService`` on a fresh ledger that holds the world's accounts."""
    directory.mkdir(mode=0o700)  # noqa: ASYNC240 - before anything is timed
    files = BrokerFiles(directory)
    store = await EventStore.open(files.ledger, BROKER, signer=setting.keys(BROKER))
    await store.append_events(setting.history)
    return BrokerService(
        files, setting.fresh_core(), store, DataDirLock.acquire(directory, "benchmark")
    )


async def serve(service: BrokerService, load: Load, topic: str, now: float, batch: int) -> int:
    """Receive in batches; a committer persists what is staged, then seals the held replies.

    As ``AgentLoop``: the reader stages each batch's events and replies and goes on with the
    next batch while the committer makes the previous ones durable in one transaction.
    Returns how many replies were sealed.
    """
    core, store = service.core, service.store
    staged: asyncio.Queue[tuple[list[BrokerCoreEvent], list[HeldReply]]] = asyncio.Queue()
    sealed = 0

    async def committer() -> None:
        nonlocal sealed
        while True:
            batches = [await staged.get()]
            while not staged.empty():
                batches.append(staged.get_nowait())
            events = [event for events, _ in batches for event in events]
            await service.persist(events)
            head = store.signed_head
            for _, held in batches:
                for reply in held:
                    reply.sealed(head, now)
                    sealed += 1
                staged.task_done()

    task = asyncio.create_task(committer(), name="committer")
    payloads = load.payloads
    for start in range(0, len(payloads), batch):
        events: list[BrokerCoreEvent] = []
        for payload in payloads[start : start + batch]:
            events.extend(core.receive(topic, payload, now))
        core.data_to_send()
        await staged.put((events, core.held_replies()))
        await asyncio.sleep(0)  # a reader yields between reads
    await staged.join()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return sealed


async def measure_service(
    setting: Setting, load: Load, sizes: Sizes, directory: Path
) -> list[Sample]:
    """``serve`` on a fresh ledger per run, the buyers' certificates verified before."""
    samples: list[Sample] = []
    broker_key = setting.world.broker.info.sign_key
    for run in range(sizes.runs + 1):
        forget_signatures()
        for certificate in load.certificates:
            credentials.CERTIFICATES.get(certificate, broker_key)
        service = await open_service(setting, directory / f"{load.kind}-{run}")
        try:
            gc.collect()
            wall, cpu = time.perf_counter_ns(), time.process_time_ns()
            sealed = await serve(service, load, setting.topic, setting.now, sizes.batch)
            sample = Sample(time.perf_counter_ns() - wall, time.process_time_ns() - cpu, sealed)
            seq, _ = service.store.durable_head
            if sealed != len(load.payloads) or seq <= len(setting.history):
                raise RuntimeError(f"{load.kind}: {sealed} replies sealed, ledger at {seq}")
            if run:
                samples.append(sample)
        finally:
            await service.store.close()
            service.lock.release()
    return samples


# --- the whole run --------------------------------------------------------------------------


def run(sizes: Sizes, verifiers: Sequence[Verifier], directory: Path) -> list[Result]:
    """Build the world and the envelopes, then measure every case with every verifier."""
    progress("building the world and the envelopes")
    setting = Setting(sizes)
    count = sizes.commitments
    loads = {
        "register": setting.load("register", setting.buyers, count),
        "redeem": setting.load("redeem", setting.buyers, count),
        "new": setting.load("register", setting.new_buyers, sizes.new_buyers),
    }
    broker_key = setting.world.broker.info.sign_key
    results: list[Result] = []
    runs = sizes.runs
    tune_for_daemon()  # as `micropay broker run` does; the world and the envelopes frozen too
    for verifier in verifiers:
        with verifier_in_use(verifier):
            progress(f"{verifier}: signature checks")
            certificate, commitment = measure_checks(broker_key, loads["register"], runs)
            for name, samples in (
                ("verify a certificate", certificate),
                ("verify a commitment", commitment),
            ):
                results.append(summarize("breakdown", name, verifier, samples, runs))
            progress(f"{verifier}: the core")
            cases: list[tuple[str, str, Load, Literal["none", "certificates", "all"]]] = [
                ("breakdown", "register, signatures cached", loads["register"], "all"),
                ("core", "register, known buyer", loads["register"], "certificates"),
                ("core", "register, new buyer", loads["new"], "none"),
                ("core", "first redeem, known buyer", loads["redeem"], "certificates"),
            ]
            for group, name, load, warm in cases:
                samples = measure_core(setting, load, runs, warm)
                results.append(summarize(group, name, verifier, samples, runs))
            progress(f"{verifier}: end to end through BrokerService and its ledger")
            for name, load, log in (
                ("register, known buyer", loads["register"], True),
                ("register, no decision log", loads["register"], False),
                ("first redeem, known buyer", loads["redeem"], True),
            ):
                log_decisions_to_null(log=log)
                where = directory / verifier
                where.mkdir()
                samples = asyncio.run(measure_service(setting, load, sizes, where))
                results.append(summarize("end to end", name, verifier, samples, runs))
                shutil.rmtree(where, ignore_errors=True)
    return results


def progress(stage: str) -> None:
    """Progress on stderr, so ``--json`` output stays clean."""
    print(f"... {stage}", file=sys.stderr, flush=True)


def work_dir(requested: str | None) -> Path:
    """A fresh directory on the repository's disk (the system temp dir if it is on it)."""
    if requested is not None:
        base = Path(requested)
    else:
        system = Path(tempfile.gettempdir())
        base = system if system.stat().st_dev == REPO.stat().st_dev else REPO / "bench"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="micropay-commitments-", dir=base))


def pin_to_one_cpu() -> int | None:
    """Run the rest of the process (and its threads) on one CPU; which one, if possible."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def versions(pinned: int | None) -> dict[str, object]:
    """Where the figures were taken."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "pinned_to_cpu": pinned,
        "cryptography": metadata.version("cryptography"),
        "pynacl": metadata.version("pynacl"),
        "msgspec": metadata.version("msgspec"),
    }


def table(results: list[Result], info: dict[str, object], sizes: Sizes) -> str:
    """The human-readable report, then the breakdown of the headline case."""
    pinned = info["pinned_to_cpu"]
    lines = [
        (
            f"Python {info['python']} on {info['platform']}, {info['cpu_count']} x"
            f" {info['cpu_model']}, "
            + (f"pinned to CPU {pinned}" if pinned is not None else "not pinned")
        ),
        (
            f"cryptography {info['cryptography']}, PyNaCl {info['pynacl']};"
            f" median of {sizes.runs} runs of {sizes.commitments:,} commitments"
            f" ({sizes.new_buyers:,} for new buyers) after a checked warm-up"
        ),
    ]
    width = max(len(r.name) for r in results) + 2
    group = ""
    for result in results:
        if result.group != group:
            group = result.group
            lines += [
                "",
                group,
                (
                    f"  {'case':<{width}}{'verifier':<11}{'µs wall':>9}{'µs CPU':>9}"
                    f"{'per s':>9}{'per CPU s':>11}"
                ),
            ]
        lines.append(
            f"  {result.name:<{width}}{result.verifier:<11}{result.us:>9.1f}{result.cpu_us:>9.1f}"
            f"{result.per_second:>9,.0f}{result.per_cpu_second:>11,.0f}"
        )
    lines += [
        "",
        (
            f"register, known buyer, CPU µs per commitment (target {TARGET:,}/s on one core,"
            f" {1e6 / TARGET:.0f} µs):"
        ),
    ]
    for verifier in dict.fromkeys(r.verifier for r in results):
        by_name = {(r.group, r.name): r for r in results if r.verifier == verifier}
        core = by_name["core", "register, known buyer"]
        rest = by_name["breakdown", "register, signatures cached"]
        served = by_name["end to end", "register, known buyer"]
        quiet = by_name["end to end", "register, no decision log"]
        check = by_name["breakdown", "verify a commitment"]
        certificate = by_name["breakdown", "verify a certificate"]
        lines.append(
            f"  {verifier:<10} commitment check {check.cpu_us:.1f} + the rest of the core"
            f" {rest.cpu_us:.1f} ~ core {core.cpu_us:.1f}; + ledger and replies"
            f" {quiet.cpu_us - core.cpu_us:.1f} + decision log {served.cpu_us - quiet.cpu_us:.1f}"
            f" = end to end {served.cpu_us:.1f} ({served.per_cpu_second:,.0f}/s);"
            f" a new buyer adds {certificate.cpu_us:.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--runs", type=int, help="timed runs per case")
    parser.add_argument(
        "--verifier", choices=[*VERIFIERS, "both"], default="both", help="Ed25519 verifier"
    )
    parser.add_argument("--all-cpus", action="store_true", help="do not pin to one CPU")
    parser.add_argument(
        "--dir", help="directory for the ledger files (default: the system temp dir if it is"
        " on the repository's disk, else bench/)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be at least 1")
        sizes = dataclasses.replace(sizes, runs=args.runs)
    verifiers = VERIFIERS if args.verifier == "both" else (args.verifier,)
    pinned = None if args.all_cpus else pin_to_one_cpu()
    directory = work_dir(args.dir)
    started = time.perf_counter()
    try:
        results = run(sizes, verifiers, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    info = versions(pinned)
    if args.json:
        report = {
            **info,
            "mode": "quick" if args.quick else "full",
            "seconds": round(time.perf_counter() - started, 2),
            "target_per_second": TARGET,
            "results": [r.as_dict() for r in results],
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(table(results, info, sizes))
        print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
