"""Millicent scrip against PayWord: what a payment costs the vendor, and a mint the broker.

docs/SCHEMES.md §1 claims a scrip payment costs the vendor two MACs and one (cacheable)
HKDF, with no hash chain and no signature, while PayWord costs one HMAC and a hash per
unit once the commitment's two signatures are checked. This measures both on the same
sans-I/O cores (``VendorCore``, ``BrokerCore``; envelopes included, no MQTT, no store), in
one run, in three workloads at one vendor:

1. one buyer paying many times (PayWord: one chain, 1 unit a payment; scrip: one minted
   scrip, every payment taking change);
2. many buyers paying many times each, interleaved;
3. many buyers paying once each: PayWord's commit, with its two Ed25519 verifications, and
   scrip's first customer-secret derivation fall on that one payment.

Everything the buyers send is built first, so the timed part is the vendor alone:
``receive`` of each envelope and ``data_to_send()``, which hands out the answers (PayWord's
receipts, scrip's ``scrip-paid`` with the change). Twice: ``data_to_send()`` after every
message, each payment answered as it comes; and after every 100, as the agent's loop takes
the core's output once per batch it drained, where the receipts of one chain merge into
one (scrip's answers cannot: each carries that payment's change). A workload's figure is
all of that CPU time, commits included, divided by its payments. Each run starts a fresh vendor
with the process-wide signature caches cleared, as a vendor process just started would.

At the broker: a ``scrip?`` handled (mint, ledger event, sealed ``minted`` reply), against
PayWord's per-chain broker work, an on-line ``register`` and an off-line first ``redeem``
of a new commitment from a buyer whose certificate is already verified.

Figures are CPU time (``time.process_time_ns``) per operation, the median of the timed
runs (5 by default) after a checked warm-up run, garbage collector off while timing; per
second is one core's worth at that median. The four vendor cases of a workload (two
schemes, two ways of answering) take turns run by run, as do the three broker requests,
so drift on a shared machine moves what is compared alike.

Run: ``uv run --frozen python bench/scrip_vs_payword.py [--quick] [--json] [--runs N]
[--payments N] [--buyers N] [--each N] [--once N] [--mints N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final, Literal, Protocol

from protocol import credentials, crypto, topics
from protocol.broker import BrokerCore, BrokerPolicy
from protocol.broker_events import AnyBrokerEvent
from protocol.buyer import BuyerCore
from protocol.envelope import Auth
from protocol.events import (
    CommitmentAccepted,
    MessageRejected,
    PaymentAccepted,
    ScripAccepted,
    ScripReceived,
)
from protocol.messages import Body, OfferItem, Redeem, Register
from protocol.scrip import customer_master, customer_secret, scrip_key
from protocol.vendor import VendorCore, VendorTerms
from tests.support.world import SeededRandom, make_world, seeded_identity

BROKER: Final = "broker"
VENDOR: Final = "vendor1"
CREDIT: Final = 10**12  # no buyer nears its limit
MAX_SCRIP: Final = 10**9  # one scrip pays the whole one-buyer workload, with change each time
PRICE: Final = 1  # minor units a payment: PayWord's one unit, scrip's price
Scheme = Literal["PayWord", "scrip"]
SCHEMES: Final[tuple[Scheme, ...]] = ("PayWord", "scrip")
Message = tuple[str, bytes]  # (topic, payload) as the vendor or the broker receives it


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each workload holds; ``--quick`` shrinks everything for the smoke test."""

    runs: int
    payments: int  # workload 1: payments by one buyer
    buyers: int  # workload 2: buyers ...
    each: int  # ... paying this many times each
    once: int  # workload 3: buyers paying once each
    mints: int  # broker: scrip minted (and PayWord chains registered, redeemed)


FULL: Final = Sizes(runs=5, payments=5_000, buyers=200, each=20, once=1_000, mints=1_000)
QUICK: Final = Sizes(runs=2, payments=200, buyers=8, each=4, once=16, mints=16)


@dataclass(frozen=True, slots=True)
class Sample:
    """One timed run: CPU and wall nanoseconds for ``count`` operations."""

    cpu_ns: int
    wall_ns: int
    count: int


@dataclass(frozen=True, slots=True)
class Row:
    """One measured case: median and spread of the per-operation CPU time."""

    group: str
    case: str
    scheme: str
    cpu_us: float
    min_us: float
    max_us: float
    wall_us: float
    count: int
    runs: int
    note: str

    @property
    def per_second(self) -> float:
        """Operations per CPU second at the median: what one core does."""
        return 1e6 / self.cpu_us

    def as_dict(self) -> dict[str, object]:
        """Flat record for ``--json``."""
        return {
            "group": self.group,
            "case": self.case,
            "scheme": self.scheme,
            "cpu_us_per_op": round(self.cpu_us, 3),
            "per_second": round(self.per_second, 1),
            "min_cpu_us": round(self.min_us, 3),
            "max_cpu_us": round(self.max_us, 3),
            "wall_us_per_op": round(self.wall_us, 3),
            "ops_per_run": self.count,
            "runs": self.runs,
            "note": self.note,
        }


def summarize(  # noqa: PLR0913 - labels plus the samples
    group: str, case: str, scheme: str, samples: list[Sample], runs: int, note: str
) -> Row:
    """Median and spread of per-operation CPU microseconds, and the median wall time."""
    cpu = [s.cpu_ns / s.count / 1000 for s in samples]
    wall = statistics.median(s.wall_ns / s.count / 1000 for s in samples)
    count = samples[0].count
    return Row(group, case, scheme, statistics.median(cpu), min(cpu), max(cpu), wall, count,
               runs, note)  # fmt: skip


def timed(loop: Callable[[], None], count: int) -> Sample:
    """CPU and wall time of ``loop``, with the garbage collector held off."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter_ns(), time.process_time_ns()
        loop()
        return Sample(time.process_time_ns() - cpu, time.perf_counter_ns() - wall, count)
    finally:
        gc.enable()


def forget_verifications() -> None:
    """Forget every verified certificate, commitment, parsed key and weak-key verdict."""
    credentials.CERTIFICATES.clear()
    credentials.COMMITMENTS.clear()
    crypto._ed25519_key.cache_clear()  # noqa: SLF001
    crypto.weak_key_reason.cache_clear()


def interleave(streams: Sequence[Sequence[Message]]) -> list[Message]:
    """Round-robin over the buyers, each buyer's own messages kept in order."""
    longest = max((len(s) for s in streams), default=0)
    return [s[n] for n in range(longest) for s in streams if n < len(s)]


# --- the world: one broker, one vendor taking both schemes, buyers on demand ----------------


class Setting:
    """An enrolled broker and vendor; buyers are enrolled and paid through them to build load.

    Buyers leave the in-memory network once enrolled (their messages are handed over
    directly), so enrolling thousands does not make every later pump walk them all.
    """

    def __init__(self) -> None:
        self.world = make_world(vendors=0, buyers=0, policy=BrokerPolicy(max_scrip_value=MAX_SCRIP))
        self.now = self.world.now
        self.broker = self.world.broker
        self.terms = VendorTerms(
            unit_value=1,
            currency="EUR",
            max_length=1_000_000,
            max_jump=100,
            items=(OfferItem("article", 5),),
            scrip=True,
        )
        # Answers the buyers while the load is built, so scrip buyers get their change.
        self.vendor = self.world.enroll_vendor(VENDOR, self.terms)
        self.enrolled: list[BuyerCore] = []

    def buyers(self, count: int) -> list[BuyerCore]:
        """The first ``count`` certified buyers holding the vendor's offer, enrolled as needed.

        Workloads share buyers (the first for one buyer, the first 200 for many, ...): each
        run's vendor is new and the signature caches are cleared, so to it every buyer is
        new, and the scrip or chain a stream pays with is its own.
        """
        while len(self.enrolled) < count:
            name = f"buyer{len(self.enrolled) + 1}"
            self.enrolled.append(self.world.enroll_buyer(name, CREDIT))
            del self.world.net.cores[name]
        return self.enrolled[:count]

    def fresh_vendor(self) -> VendorCore:
        """The vendor as just started: its certificate, no chains, no spent set, no caches."""
        vendor = VendorCore(VENDOR, seeded_identity(VENDOR), self.broker.info, self.terms)
        vendor.restore_certificate(self.vendor.certificate, self.now)
        return vendor

    def fresh_broker(self, history: list[AnyBrokerEvent], peers: Iterable[BuyerCore]) -> BrokerCore:
        """The broker rebuilt from its ledger, the MAC keys with the vendor and ``peers`` derived.

        Replies are sealed by the core itself (``attest_replies`` off), so their envelope is
        in the figure; the daemon instead seals them once a commit has signed the head.
        """
        broker = BrokerCore(
            BROKER,
            seeded_identity(BROKER),
            policy=BrokerPolicy(max_scrip_value=MAX_SCRIP),
            random=SeededRandom(BROKER),
        )
        broker.rebuild(history)
        broker.pair_key_with(VENDOR, self.vendor.identity.agree_key)
        for buyer in peers:
            broker.pair_key_with(buyer.account, buyer.identity.agree_key)
        return broker

    # --- load ---------------------------------------------------------------------------------

    def payword(self, buyer: BuyerCore, payments: int) -> list[Message]:
        """A new chain's ``commit``, then ``payments`` payments of one unit each."""
        opened = buyer.open_channel(VENDOR, payments, self.now)
        out = buyer.data_to_send()
        for _ in range(payments):
            buyer.pay(opened.commitment_id, PRICE, self.now)
            out.extend(buyer.data_to_send())
        if len(out) != payments + 1:
            raise RuntimeError(f"expected one commit and {payments} payments, got {len(out)}")
        return [(o.topic, o.payload) for o in out]

    def mint(self, buyer: BuyerCore, value: int) -> None:
        """Scrip worth ``value`` at the vendor, minted by the broker core and kept by the buyer."""
        buyer.mint(VENDOR, value, self.now)
        self._to_broker(buyer)
        events = self._answer(self.broker, buyer)
        if not any(isinstance(e, ScripReceived) for e in events):
            raise RuntimeError(f"{buyer.account} got no scrip: {events}")

    def scrip(self, buyer: BuyerCore, payments: int) -> list[Message]:
        """``payments`` scrip payments of ``PRICE`` from one minted scrip, each taking change.

        Change comes only in the vendor's answer, so every payment but the last goes to the
        building vendor and its answer back to the buyer.
        """
        self.mint(buyer, PRICE * payments + 1)
        out: list[Message] = []
        for n in range(payments):
            buyer.pay_scrip(VENDOR, PRICE, self.now)
            (sent,) = buyer.data_to_send()
            out.append((sent.topic, sent.payload))
            if n + 1 < payments:
                accepted = self.vendor.receive(sent.topic, sent.payload, self.now)
                if not (len(accepted) == 1 and isinstance(accepted[0], ScripAccepted)):
                    raise RuntimeError(f"the building vendor refused scrip: {accepted}")
                events = self._answer(self.vendor, buyer)
                if not any(isinstance(e, ScripReceived) for e in events):
                    raise RuntimeError(f"no change for {buyer.account}: {events}")
        return out

    def load(self, scheme: Scheme, buyers: Sequence[BuyerCore], payments: int) -> list[Message]:
        """Every buyer paying ``payments`` times, interleaved."""
        build = self.payword if scheme == "PayWord" else self.scrip
        return interleave([build(buyer, payments) for buyer in buyers])

    def _to_broker(self, sender: BuyerCore | VendorCore) -> None:
        for out in sender.data_to_send():
            refused = self.world.net.inject(BROKER, out.topic, out.payload, self.now)
            if any(isinstance(e, MessageRejected) for e in refused):
                raise RuntimeError(f"broker refused {sender.account}: {refused}")

    def _answer(self, sender: BrokerCore | VendorCore, buyer: BuyerCore) -> list[object]:
        inbox = topics.inbox(buyer.account, sender.account)
        return [
            event
            for out in sender.data_to_send()
            if out.topic == inbox
            for event in buyer.receive(out.topic, out.payload, self.now)
        ]

    def to_broker(
        self, buyers: Sequence[BuyerCore], body: Callable[[BuyerCore], Body]
    ) -> list[Message]:
        """One vendor envelope to the broker per buyer, carrying ``body(buyer)``."""
        vendor, out = self.vendor, []
        for buyer in buyers:
            vendor.send(BROKER, body(buyer), self.now, auth=Auth.PAIR, key=vendor.broker_key)
            (sent,) = vendor.data_to_send()
            out.append((sent.topic, sent.payload))
        return out


# --- the vendor -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload's envelopes for one scheme, in the order the vendor gets them."""

    case: str
    scheme: Scheme
    messages: list[Message]
    payments: int
    note: str


def accepted_payments(scheme: Scheme, events: Sequence[object]) -> int:
    """Payments among a vendor's events; raises on anything refused."""
    wanted = PaymentAccepted if scheme == "PayWord" else ScripAccepted
    paid = sum(isinstance(e, wanted) for e in events)
    others = [e for e in events if not isinstance(e, wanted | CommitmentAccepted)]
    if others:
        raise RuntimeError(f"{scheme}: the vendor did not accept everything: {others[:1]}")
    return paid


class Trial(Protocol):
    """One run of a case on a fresh core: with ``check``, untimed and every answer checked."""

    def __call__(self, *, check: bool) -> Sample | None: ...


def alternate(trials: Sequence[Trial], runs: int) -> list[list[Sample]]:
    """A checked warm-up run of every trial, then ``runs`` timed rounds taking turns.

    Compared cases run one after the other within each round, so a machine whose speed
    drifts (this one is shared) moves both sides of a ratio alike.
    """
    for trial in trials:
        trial(check=True)
    samples: list[list[Sample]] = [[] for _ in trials]
    for _ in range(runs):
        for trial, into in zip(trials, samples, strict=True):
            sample = trial(check=False)
            if sample is not None:
                into.append(sample)
    return samples


def vendor_trial(setting: Setting, load: Workload, every: int) -> Trial:
    """The workload fed to a vendor just started, with verification caches cleared.

    ``data_to_send()`` is called after every ``every`` messages: 1 answers each payment
    as it comes; more is what the agent's loop does under load, taking the core's output
    once per batch it drained, so PayWord receipts of one chain merge (scrip's cannot:
    each answer carries that payment's change).
    """
    now = setting.now
    batches = [load.messages[n : n + every] for n in range(0, len(load.messages), every)]

    def trial(*, check: bool) -> Sample | None:
        forget_verifications()
        vendor = setting.fresh_vendor()
        receive, answer = vendor.receive, vendor.data_to_send
        if check:
            events: list[object] = []
            answers = 0
            for batch in batches:
                for topic, payload in batch:
                    events.extend(receive(topic, payload, now))
                answers += len(answer())
            paid = accepted_payments(load.scheme, events)
            if paid != load.payments or (every == 1 and answers != len(load.messages)):
                raise RuntimeError(
                    f"{load.case}, {load.scheme}: {paid}/{load.payments} paid,"
                    f" {answers} answers to {len(load.messages)} messages"
                )
            return None

        def loop() -> None:
            for batch in batches:
                for topic, payload in batch:
                    receive(topic, payload, now)
                answer()

        return timed(loop, load.payments)

    return trial


def workloads(setting: Setting, sizes: Sizes, progress: Callable[[str], None]) -> list[Workload]:
    """Every workload for both schemes."""
    out: list[Workload] = []
    cases = (
        ("1 buyer", 1, sizes.payments, "one chain / one scrip; commit included"),
        (f"{sizes.buyers} buyers", sizes.buyers, sizes.each,
         f"{sizes.each} payments each, interleaved; commits included"),
        (f"{sizes.once} buyers, once each", sizes.once, 1,
         "PayWord: commit + payment; scrip: first secret derived"),
    )  # fmt: skip
    for case, buyers, payments, note in cases:
        progress(f"enrolling {buyers} buyers")
        setting.buyers(buyers)
        for scheme in SCHEMES:
            progress(f"building {case}, {scheme}")
            messages = setting.load(scheme, setting.buyers(buyers), payments)
            out.append(Workload(case, scheme, messages, buyers * payments, note))
    return out


# --- the broker -----------------------------------------------------------------------------


def broker_trial(
    setting: Setting,
    history: list[AnyBrokerEvent],
    buyers: Sequence[BuyerCore],
    messages: list[Message],
    check_events: Callable[[list[object]], None],
) -> Trial:
    """``BrokerCore.receive`` and its reply, per message, on a broker rebuilt from the ledger.

    The buyers' certificates are verified before each run (known buyers), their
    commitments not.
    """
    now = setting.now
    broker_key = setting.broker.info.sign_key

    def trial(*, check: bool) -> Sample | None:
        forget_verifications()
        for buyer in buyers:
            credentials.CERTIFICATES.get(buyer.certificate, broker_key)
        broker = setting.fresh_broker(history, buyers)
        receive, answer = broker.receive, broker.data_to_send
        if check:
            events: list[object] = []
            for topic, payload in messages:
                events.extend(receive(topic, payload, now))
                if len(answer()) != 1:
                    raise RuntimeError("every request gets exactly one reply")
            check_events(events)
            return None

        def loop() -> None:
            for topic, payload in messages:
                receive(topic, payload, now)
                answer()

        return timed(loop, len(messages))

    return trial


def broker_rows(setting: Setting, sizes: Sizes, progress: Callable[[str], None]) -> list[Row]:
    """A mint per buyer, and a new PayWord chain per buyer, registered or first redeemed."""
    progress("building the broker's load")
    buyers = setting.buyers(sizes.mints)
    history = setting.world.net.ledger_events(BROKER)  # what the rebuilt broker starts from
    # The ledger holds everything up to here; the rest is new to each rebuilt broker.
    minting: list[Message] = []
    for buyer in buyers:
        buyer.mint(VENDOR, 100, setting.now)
        (sent,) = buyer.data_to_send()
        minting.append((sent.topic, sent.payload))
    chains = {}
    for buyer in buyers:
        opened = buyer.open_channel(VENDOR, 100, setting.now)
        buyer.data_to_send()  # the commit to the vendor is not the broker's
        chains[buyer.account] = buyer.channels[opened.commitment_id]
    register = setting.to_broker(buyers, lambda b: Register(chains[b.account].commitment))
    redeem = setting.to_broker(
        buyers,
        lambda b: Redeem(chains[b.account].commitment, 1, chains[b.account].chain.word(1)),
    )

    def counted(kind: str, want: str) -> Callable[[list[object]], None]:
        def check(events: list[object]) -> None:
            done = sum(type(e).__name__ == want for e in events)
            refused = [e for e in events if isinstance(e, MessageRejected)]
            if refused or done != len(buyers):
                raise RuntimeError(f"{kind}: {done}/{len(buyers)} {want}; {refused[:1]}")

        return check

    cases = (
        ("mint one scrip (scrip?)", "scrip", minting, counted("mint", "ScripMinted"),
         "reserve, ledger event, scrip tagged, secret wrapped, reply sealed"),
        ("on-line register of a new chain", "PayWord", register,
         counted("register", "CommitmentRegistered"), "commitment Ed25519 verified, reply sealed"),
        ("off-line first redeem of a new chain", "PayWord", redeem,
         counted("redeem", "CommitmentRegistered"), "the same, plus 1 hash and the credit"),
    )  # fmt: skip
    progress("broker: " + ", ".join(case for case, *_ in cases))
    trials = [
        broker_trial(setting, history, buyers, messages, check)
        for _, _, messages, check, _ in cases
    ]
    group = "broker: one request from a known buyer (certificate verified), per request"
    return [
        summarize(group, case, scheme, samples, sizes.runs, note)
        for (case, scheme, _, _, note), samples in zip(
            cases, alternate(trials, sizes.runs), strict=True
        )
    ]


# --- primitives -----------------------------------------------------------------------------


def primitive_rows(setting: Setting, sizes: Sizes) -> list[Row]:
    """The operations the figures are made of, to read them by."""
    count = max(sizes.mints, 200)
    broker, vendor = setting.broker, setting.vendor
    pair = crypto.pair_key(broker.identity, BROKER, vendor.identity.agree_key, VENDOR)
    master = customer_master(pair, VENDOR, 20454)
    mac = crypto.MacKey(scrip_key(pair, VENDOR, 20454))
    signer = seeded_identity("signer")
    signature = signer.sign(crypto.TAG_COMMITMENT, b"m" * 200)
    agree = vendor.identity.agree_key
    ops: list[tuple[str, Callable[[], object], str]] = [
        ("HMAC-SHA256 (MacKey.tag, 100 B)", lambda: mac.tag(b"t", b"x" * 100), ""),
        ("HKDF-SHA256 (customer_secret)", lambda: customer_secret(master, "buyer1"), ""),
        ("X25519 + HKDF (pair_key)",
         lambda: crypto.pair_key(broker.identity, BROKER, agree, VENDOR), "uncached"),
        ("Ed25519 verify", lambda: crypto.verify_signature(signer.sign_key, crypto.TAG_COMMITMENT,
                                                           b"m" * 200, signature), "key cached"),
    ]  # fmt: skip
    rows = []
    for name, op, note in ops:

        def loop(op: Callable[[], object] = op) -> None:
            for _ in range(count):
                op()

        loop()
        samples = [timed(loop, count) for _ in range(sizes.runs)]
        rows.append(summarize("primitives", name, "", samples, sizes.runs, note))
    return rows


# --- the run --------------------------------------------------------------------------------

BATCH: Final = 100
VENDOR_GROUP: Final = "vendor: receive of pre-built envelopes, each answered at once; per payment"
BATCHED_GROUP: Final = f"vendor: the same, answers taken every {BATCH} messages; per payment"


def run(sizes: Sizes, progress: Callable[[str], None]) -> list[Row]:
    """Build the world and every envelope first, then measure the vendor, broker, primitives."""
    progress("enrolling the broker and the vendor")
    setting = Setting()
    loads = workloads(setting, sizes, progress)
    rows: list[Row] = []
    gc.collect()
    gc.freeze()  # the world and the loads: no collection before a timed run walks them again
    broker = broker_rows(setting, sizes, progress)
    modes = ((VENDOR_GROUP, 1), (BATCHED_GROUP, BATCH))
    for n in range(0, len(loads), len(SCHEMES)):
        # One workload: both schemes, both ways of answering, taking turns.
        cases = [(group, every, load) for group, every in modes for load in loads[n : n + 2]]
        progress(f"vendor: {loads[n].case}")
        trials = [vendor_trial(setting, load, every) for _, every, load in cases]
        for (group, _, load), samples in zip(cases, alternate(trials, sizes.runs), strict=True):
            rows.append(summarize(group, load.case, load.scheme, samples, sizes.runs, load.note))
    rows.sort(key=lambda row: row.group != VENDOR_GROUP)  # stable: workloads stay in order
    rows.extend(broker)
    rows.extend(primitive_rows(setting, sizes))
    return rows


def machine() -> dict[str, object]:
    """Where the figures were taken."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        cpuinfo = []
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    model = models[0] if models else ""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "cryptography": metadata.version("cryptography"),
        "msgspec": metadata.version("msgspec"),
    }


def ratios(rows: Sequence[Row]) -> list[tuple[str, float]]:
    """Scrip's CPU per operation over PayWord's, per vendor workload and broker request."""
    by_case: dict[str, dict[str, Row]] = {}
    for row in rows:
        if row.group in (VENDOR_GROUP, BATCHED_GROUP):
            every = 1 if row.group == VENDOR_GROUP else BATCH
            by_case.setdefault(f"vendor: {row.case}, answers every {every}", {})[row.scheme] = row
    out = [(case, pair["scrip"].cpu_us / pair["PayWord"].cpu_us) for case, pair in by_case.items()]
    broker = [row for row in rows if row.group.startswith("broker")]
    mint = next(row for row in broker if row.scheme == "scrip")
    out.extend(
        (f"broker: mint / {row.case}", mint.cpu_us / row.cpu_us)
        for row in broker
        if row.scheme == "PayWord"
    )
    return out


def table(rows: list[Row], info: dict[str, object], sizes: Sizes) -> str:
    """The human-readable report."""
    lines = [
        (
            f"{info['cpu']}, {info['cpu_count']} CPUs; Python {info['python']} on"
            f" {info['platform']}; cryptography {info['cryptography']}, msgspec {info['msgspec']}"
        ),
        f"CPU time, median of {sizes.runs} runs after a checked warm-up run; GC off while timing",
    ]
    width = max(len(f"{r.case}, {r.scheme}") for r in rows) + 2
    group = ""
    for row in rows:
        if row.group != group:
            group = row.group
            lines += [
                "",
                group,
                f"  {'case':<{width}}{'µs/op':>10}{'min-max':>16}{'per s':>10}{'ops':>7}  note",
            ]
        name = f"{row.case}, {row.scheme}" if row.scheme else row.case
        lines.append(
            f"  {name:<{width}}{row.cpu_us:>10.2f}{f'{row.min_us:.1f}-{row.max_us:.1f}':>16}"
            f"{row.per_second:>10,.0f}{row.count:>7,}"
            f"  {row.note}".rstrip()
        )
    lines += ["", "scrip / PayWord, CPU per operation"]
    pairs = ratios(rows)
    label = max(len(case) for case, _ in pairs) + 2
    lines += [f"  {case:<{label}}{ratio:>6.2f}" for case, ratio in pairs]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny workloads (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    for field in dataclasses.fields(Sizes):
        parser.add_argument(f"--{field.name}", type=int, help=f"override {field.name}")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Sizes)}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    if any(value < 1 for value in overrides.values()):
        parser.error("sizes are at least 1")
    sizes = dataclasses.replace(sizes, **overrides)

    started = time.perf_counter()

    def progress(stage: str) -> None:
        if not args.json:
            print(
                f"... {time.perf_counter() - started:6.1f} s  {stage}", file=sys.stderr, flush=True
            )

    rows = run(sizes, progress)
    info = machine()
    if args.json:
        report = {
            **info,
            "mode": "quick" if args.quick else "full",
            "sizes": dataclasses.asdict(sizes),
            "seconds": round(time.perf_counter() - started, 2),
            "results": [row.as_dict() for row in rows],
            "ratios": {case: round(ratio, 3) for case, ratio in ratios(rows)},
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(table(rows, info, sizes))
        print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
