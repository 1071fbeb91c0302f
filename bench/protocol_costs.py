"""What one payment, one redemption and one new commitment cost the protocol core here.

The vendor's per-payment cost bounds how many payments one process can accept; the broker's
per-redemption and per-commitment costs bound how many vendors and buyers one broker serves.
Envelopes are built before timing, so only the receiving side is measured. Each figure is the
median over several timed runs after an untimed warm-up run that also checks every message was
accepted. The garbage collector is off inside timed loops, as with ``timeit``.

Run: ``uv run --frozen python bench/protocol_costs.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from itertools import repeat
from typing import Protocol

from protocol import chain, credentials, crypto, topics
from protocol.broker import BrokerCore
from protocol.broker_events import AnyBrokerEvent
from protocol.buyer import BuyerCore
from protocol.crypto import TAG_COMMITMENT, MacKey
from protocol.envelope import Auth, open_body, parse, seal
from protocol.events import (
    CommitmentAccepted,
    MessageRejected,
    Outgoing,
    PaymentAccepted,
)
from protocol.messages import OfferItem, Payment, Redeem
from protocol.vendor import VendorCore, VendorTerms
from tests.support.forgery import unverifiable_commit
from tests.support.world import SeededRandom, make_world, seeded_identity

BROKER = "broker"
VENDOR = "vendor1"
CREDIT = 10**12  # no buyer gets near its limit, so no credit events skew redemptions
RECEIPT_EVERY = 100
MAX_STEP = 10
VENDOR_GROUP = "vendor: VendorCore.receive of pre-built payment envelopes"
BROKER_GROUP = "broker: BrokerCore.receive of pre-built redeem envelopes"
REJECT_GROUP = "vendor: cost of refusing hostile input (VendorCore.receive)"


@dataclass(frozen=True, slots=True)
class Sizes:
    """Operation counts per timed run; ``--quick`` shrinks them for smoke tests."""

    runs: int
    payments: int
    redemptions_k1: int
    redemptions_k100: int
    fresh_commitments: int
    primitive_ops: int


FULL = Sizes(
    runs=5,
    payments=50_000,
    redemptions_k1=2_000,
    redemptions_k100=500,
    fresh_commitments=200,
    primitive_ops=100_000,
)
QUICK = Sizes(
    runs=3,
    payments=2_000,
    redemptions_k1=300,
    redemptions_k100=40,
    fresh_commitments=20,
    primitive_ops=5_000,
)


@dataclass(frozen=True, slots=True)
class Result:
    """One measured operation: median and spread of the per-op time over the runs."""

    group: str
    name: str
    ns_per_op: float
    min_ns: float
    max_ns: float
    ops: int
    runs: int
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        """Flat record for ``--json``."""
        return {
            "group": self.group,
            "name": self.name,
            "us_per_op": round(self.ns_per_op / 1000, 4),
            "ops_per_s": round(1e9 / self.ns_per_op, 1),
            "min_us_per_op": round(self.min_ns / 1000, 4),
            "max_us_per_op": round(self.max_ns / 1000, 4),
            "ops_per_run": self.ops,
            "runs": self.runs,
            "note": self.note,
        }


class Trial(Protocol):
    """Prepares its state untimed, runs, returns (elapsed ns of the timed part, ops).

    With ``check`` the run is the warm-up: it verifies every message was accepted.
    """

    def __call__(self, *, check: bool) -> tuple[int, int]: ...


def timed(loop: Callable[[], None]) -> int:
    """Nanoseconds taken by ``loop``, with the garbage collector held off."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        loop()
        return time.perf_counter_ns() - start
    finally:
        gc.enable()


def summarize(  # noqa: PLR0913 - labels plus the samples
    group: str, name: str, samples: list[float], ops: int, runs: int, note: str = ""
) -> Result:
    """Median and spread of per-op nanoseconds."""
    median = statistics.median(samples)
    return Result(group, name, median, min(samples), max(samples), ops, runs, note)


def measure(group: str, name: str, trial: Trial, runs: int, note: str = "") -> Result:
    """Warm up (checking results), then the median per-op time of ``runs`` timed trials."""
    trial(check=True)
    samples: list[float] = []
    ops = 0
    for _ in range(runs):
        elapsed, ops = trial(check=False)
        samples.append(elapsed / ops)
    return summarize(group, name, samples, ops, runs, note)


# --- an enrolled in-memory world (tests.support.world: seeded keys, fixed clock) -----------


class CostWorld:
    """One broker and one vendor, enrolled; buyers are added on demand.

    Every message is stamped and received at the world's fixed clock (``T0``).
    """

    def __init__(self) -> None:
        self.world = make_world(vendors=0, buyers=0)
        self.now = self.world.now
        self.broker = self.world.broker
        self.terms = VendorTerms(
            unit_value=1,
            currency="EUR",
            max_length=1_000_000,
            max_jump=100,
            items=(OfferItem("article", 5),),
        )
        self.vendor = self.world.enroll_vendor(VENDOR, self.terms)

    def enroll_buyer(self, name: str) -> BuyerCore:
        """A certified buyer that has read the vendor's offer."""
        return self.world.enroll_buyer(name, CREDIT)

    def open_channel(self, buyer: BuyerCore, length: int) -> tuple[bytes, Outgoing]:
        """A new commitment and its ``commit`` envelope, not delivered to anybody."""
        opened = buyer.open_channel(VENDOR, length, self.now)
        (commit,) = buyer.data_to_send()
        return opened.commitment_id, commit

    def redeem_envelope(self, buyer: BuyerCore, cid: bytes, index: int) -> bytes:
        """The vendor's ``redeem`` of ``w_index`` on a buyer's chain, as the broker gets it."""
        channel = buyer.channels[cid]
        body = Redeem(channel.commitment, index, channel.chain.word(index))
        vendor = self.vendor
        vendor.send(BROKER, body, self.now, auth=Auth.PAIR, key=vendor.broker_key, corr=cid[:16])
        (out,) = vendor.data_to_send()
        return out.payload

    def fresh_broker(self, history: list[AnyBrokerEvent]) -> BrokerCore:
        """A broker rebuilt from the ledger, its MAC key with the vendor already derived."""
        broker = BrokerCore(BROKER, seeded_identity(BROKER), random=SeededRandom(BROKER))
        broker.rebuild(history)
        broker.pair_key_with(VENDOR, self.vendor.identity.agree_key)
        return broker

    def fresh_vendor(self, commit: Outgoing) -> VendorCore:
        """A vendor that has just accepted ``commit`` and sent its receipt."""
        vendor = VendorCore(VENDOR, seeded_identity(VENDOR), self.broker.info, self.terms)
        vendor.restore_certificate(self.vendor.certificate, self.now)
        events = vendor.receive(commit.topic, commit.payload, self.now)
        if not (len(events) == 1 and isinstance(events[0], CommitmentAccepted)):
            raise RuntimeError(f"vendor refused the commitment: {events}")
        vendor.data_to_send()
        return vendor


def clear_verification_caches() -> None:
    """Forget every verified certificate, commitment and parsed public key in this process."""
    credentials.CERTIFICATES.clear()
    credentials.COMMITMENTS.clear()
    crypto._ed25519_key.cache_clear()  # noqa: SLF001


# --- vendor -------------------------------------------------------------------------------


def payment_envelopes(
    world: CostWorld, buyer: BuyerCore, steps: list[int]
) -> tuple[bytes, Outgoing, list[bytes]]:
    """A fresh channel's id, its commit and one payment envelope per step, in order."""
    cid, commit = world.open_channel(buyer, sum(steps))
    payloads: list[bytes] = []
    for units in steps:
        buyer.pay(cid, units, world.now)
        (out,) = buyer.data_to_send()
        payloads.append(out.payload)
    return cid, commit, payloads


def vendor_trial(world: CostWorld, buyer: BuyerCore, steps: list[int]) -> Trial:
    """Feed pre-built payments, in order, to a vendor that just accepted the commitment."""
    cid, commit, payloads = payment_envelopes(world, buyer, steps)
    topic = topics.inbox(VENDOR, buyer.account)
    total, now = sum(steps), world.now

    def checked(vendor: VendorCore) -> None:
        for payload in payloads:
            events = vendor.receive(topic, payload, now)
            if len(events) != 1 or not isinstance(events[0], PaymentAccepted):
                raise RuntimeError(f"payment refused: {events}")

    def trial(*, check: bool) -> tuple[int, int]:
        vendor = world.fresh_vendor(commit)
        receive = vendor.receive

        def loop() -> None:
            for payload in payloads:
                receive(topic, payload, now)

        elapsed = 0 if check else timed(loop)
        if check:
            checked(vendor)
        if vendor.chains[cid].index != total:
            raise RuntimeError("vendor did not accept every payment")
        return elapsed, len(payloads)

    return trial


def rejection_trial(
    vendor_of: Callable[[], VendorCore], topic: str, payloads: list[bytes], now: float
) -> Trial:
    """Feed envelopes that must all be refused; the vendor's state must not move."""

    def trial(*, check: bool) -> tuple[int, int]:
        vendor = vendor_of()
        receive = vendor.receive
        before = {cid: state.index for cid, state in vendor.chains.items()}
        if check:
            for payload in payloads:
                events = receive(topic, payload, now)
                if len(events) != 1 or not isinstance(events[0], MessageRejected):
                    raise RuntimeError(f"hostile input accepted: {events}")
            elapsed = 0
        else:

            def loop() -> None:
                for payload in payloads:
                    receive(topic, payload, now)

            elapsed = timed(loop)
        if {cid: state.index for cid, state in vendor.chains.items()} != before:
            raise RuntimeError("a refused message moved the vendor's state")
        return elapsed, len(payloads)

    return trial


def forged_commits(world: CostWorld, count: int) -> tuple[str, list[bytes]]:
    """Distinct commits from one sender whose certificate a fake broker signed."""
    commits = [
        unverifiable_commit(world.now, n, vendor=VENDOR, credit_limit=CREDIT) for n in range(count)
    ]
    return commits[0][0], [payload for _, payload in commits]


def rejection_results(world: CostWorld, buyer: BuyerCore, sizes: Sizes) -> list[Result]:
    """What a flood costs the vendor per message, by the check that stops it."""
    count = max(sizes.fresh_commitments, 20)
    _, commit, payloads = payment_envelopes(world, buyer, [1] * count)
    topic = topics.inbox(VENDOR, buyer.account)
    bad_mac = [p[:-1] + bytes([p[-1] ^ 1]) for p in payloads]
    unknown = [
        seal(
            topic,
            Payment(os.urandom(32), 1, bytes(32)),
            auth=Auth.CHAIN,
            sender=buyer.account,
            recipient=VENDOR,
            counter=n,
            now=world.now,
            key=MacKey(bytes(32)),
            ref=os.urandom(32),
        )
        for n in range(count)
    ]
    forged_topic, forged = forged_commits(world, count)
    terms = world.terms

    def with_chain() -> VendorCore:
        return world.fresh_vendor(commit)

    def cold() -> VendorCore:
        clear_verification_caches()
        world.terms = dataclasses.replace(terms, commit_failure_budget=10**9)
        try:
            return with_chain()
        finally:
            world.terms = terms

    def spent_budget() -> VendorCore:
        vendor = with_chain()
        for payload in forged[: terms.commit_failure_budget]:
            vendor.receive(forged_topic, payload, world.now)
        return vendor

    runs, now = sizes.runs, world.now
    throttled = forged[terms.commit_failure_budget :] or forged
    cases = [
        ("bad MAC on a known chain", with_chain, topic, bad_mac, "parse + HMAC"),
        ("payment naming an unknown chain", with_chain, topic, unknown, "parse + lookup, no MAC"),
        ("first commit, forged certificate", cold, forged_topic, forged,
         "decode + Ed25519 verify (budget lifted)"),
        ("first commit, sender over its failure budget", spent_budget, forged_topic, throttled,
         "refused before any signature check"),
    ]  # fmt: skip
    return [
        measure(REJECT_GROUP, name, rejection_trial(vendor_of, where, payloads, now), runs, note)
        for name, vendor_of, where, payloads, note in cases
    ]


def receipt_results(world: CostWorld, buyer: BuyerCore, sizes: Sizes) -> list[Result]:
    """Payments with ``data_to_send()`` every ``RECEIPT_EVERY``: the whole, and receipts alone."""
    count = sizes.payments
    cid, commit, payloads = payment_envelopes(world, buyer, [1] * count)
    topic = topics.inbox(VENDOR, buyer.account)
    now = world.now
    batches = [payloads[i : i + RECEIPT_EVERY] for i in range(0, count, RECEIPT_EVERY)]

    def trial() -> tuple[int, int]:
        vendor = world.fresh_vendor(commit)
        receive, flush, clock = vendor.receive, vendor.data_to_send, time.perf_counter_ns
        spent = 0
        receipts = 0

        def loop() -> None:
            nonlocal spent, receipts
            for batch in batches:
                for payload in batch:
                    receive(topic, payload, now)
                start = clock()
                out = flush()
                spent += clock() - start
                receipts += len(out)

        elapsed = timed(loop)
        if vendor.chains[cid].index != count or receipts != len(batches):
            raise RuntimeError("expected every payment accepted and one receipt per batch")
        return elapsed, spent

    trial()
    totals: list[float] = []
    flushes: list[float] = []
    for _ in range(sizes.runs):
        elapsed, spent = trial()
        totals.append(elapsed / count)
        flushes.append(spent / len(batches))
    group, runs = VENDOR_GROUP, sizes.runs
    return [
        summarize(
            group,
            f"payment, step 1, + data_to_send() every {RECEIPT_EVERY}",
            totals,
            count,
            runs,
            "receipts spread over the payments",
        ),
        summarize(
            group,
            "receipt: data_to_send() with 1 coalesced receipt",
            flushes,
            len(batches),
            runs,
            "per call (seal + MAC), timed inside the run above",
        ),
    ]


# --- broker -------------------------------------------------------------------------------


def refusals(events: Sequence[object]) -> list[MessageRejected]:
    """The rejections among what the broker decided (its ledger events are the rest)."""
    return [event for event in events if isinstance(event, MessageRejected)]


def known_commitment_trial(  # noqa: PLR0913 - the world, the chain and the shape of the run
    world: CostWorld,
    history: list[AnyBrokerEvent],
    buyer: BuyerCore,
    cid: bytes,
    k: int,
    count: int,
) -> Trial:
    """``count`` redemptions of ``k`` new paywords each, on a commitment the ledger holds."""
    payloads = [world.redeem_envelope(buyer, cid, 1 + k * n) for n in range(1, count + 1)]
    topic = topics.inbox(BROKER, VENDOR)
    now, last = world.now, 1 + k * count

    def trial(*, check: bool) -> tuple[int, int]:
        broker = world.fresh_broker(history)
        receive = broker.receive
        rejected: list[object] = []

        def loop() -> None:
            for payload in payloads:
                receive(topic, payload, now)

        def checked() -> None:
            for payload in payloads:
                rejected.extend(refusals(receive(topic, payload, now)))

        elapsed = timed(checked if check else loop)
        if rejected or broker.chains[cid].index != last or len(broker.data_to_send()) != count:
            raise RuntimeError(f"broker did not credit every redemption: {rejected[:1]}")
        return elapsed, count

    return trial


def fresh_commitment_trial(
    world: CostWorld,
    history: list[AnyBrokerEvent],
    redeems: list[tuple[BuyerCore, bytes, bytes]],
    mode: str,
) -> Trial:
    """First redemptions (index 1) of commitments the broker has never seen.

    Each run starts from a broker rebuilt from the ledger, which holds the accounts but none
    of these commitments. The process-wide verification caches are what ``mode`` sets:
    ``"cold"`` clears them (also the parsed-key cache, so the broker's own key is parsed once
    per run), so the certificate and the commitment are both verified from scratch;
    ``"known-buyer"`` clears them, then verifies each buyer's certificate, untimed, as if the
    buyer had been seen before; ``"cached"`` leaves them warm from the previous run, which
    isolates the registration work from the signature checks.
    """
    topic = topics.inbox(BROKER, VENDOR)
    now = world.now
    broker_key = world.broker.info.sign_key
    certificates = {buyer.certificate for buyer, _, _ in redeems}

    def trial(*, check: bool) -> tuple[int, int]:
        broker = world.fresh_broker(history)
        receive = broker.receive
        before = len(broker.chains)
        rejected: list[object] = []
        if mode != "cached":
            clear_verification_caches()
        if mode == "known-buyer":
            for certificate in certificates:
                credentials.verify_certificate(certificate, broker_key, BROKER, now, role="buyer")

        def loop() -> None:
            for _, _, payload in redeems:
                receive(topic, payload, now)

        def checked() -> None:
            for _, _, payload in redeems:
                rejected.extend(refusals(receive(topic, payload, now)))

        elapsed = timed(checked if check else loop)
        if (
            rejected
            or len(broker.chains) - before != len(redeems)
            or any(broker.chains[cid].index != 1 for _, cid, _ in redeems)
        ):
            raise RuntimeError(f"broker did not register every commitment: {rejected[:1]}")
        return elapsed, len(redeems)

    return trial


# --- primitives ---------------------------------------------------------------------------


def primitive_trial(op: Callable[[], object], count: int) -> Trial:
    """``count`` calls of a zero-argument closure (the call itself is part of the cost)."""

    def trial(*, check: bool) -> tuple[int, int]:
        del check

        def loop() -> None:
            for _ in repeat(None, count):
                op()

        return timed(loop), count

    return trial


def primitive_results(sample: bytes, topic: str, sizes: Sizes) -> list[Result]:
    """SHA-256 chain step, HMAC, envelope parse, body decode, Ed25519 verify."""
    runs, base = sizes.runs, sizes.primitive_ops
    word = hashlib.sha256(b"word").digest()
    mac = MacKey(hashlib.sha256(b"key").digest())
    prefix = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    parsed = parse(sample)
    signed_part = parsed.signed_part
    identity = seeded_identity("signer")
    sign_key, message = identity.sign_key, b"m" * 200
    signature = identity.sign(TAG_COMMITMENT, message)
    step, tag, verify = chain.step, mac.tag, crypto.verify_signature
    mac_size = len(prefix) + len(signed_part)
    cases: list[tuple[str, Callable[[], object], int, str]] = [
        ("call of an empty lambda", lambda: None, base, "overhead included in every row below"),
        ("chain.step: SHA-256 of one payword link", lambda: step(word, 12_345), base, "64 B"),
        ("MacKey.tag: HMAC-SHA256", lambda: tag(prefix, signed_part), base, f"{mac_size} B"),
        ("envelope.parse of a payment", lambda: parse(sample), base, f"{len(sample)} B"),
        ("open_body: decode a Payment body", lambda: open_body(parsed), base, ""),
        (
            "Ed25519 verify (crypto.verify_signature)",
            lambda: verify(sign_key, TAG_COMMITMENT, message, signature),
            max(base // 50, 100),
            "226 B message, key object cached",
        ),
    ]
    return [
        measure("primitives", name, primitive_trial(op, count), runs, note)
        for name, op, count, note in cases
    ]


def run(sizes: Sizes, progress: Callable[[str], None]) -> list[Result]:
    """Build the world and every envelope, then measure: vendor, broker, primitives."""
    progress("building the world and the envelopes")
    world = CostWorld()
    history: list[AnyBrokerEvent] = []  # the broker's ledger, filled once the world is built
    rng = random.Random(2026)
    mixed = [rng.randint(1, MAX_STEP) for _ in range(sizes.payments)]
    payer = world.enroll_buyer("payer")
    redeemer = world.enroll_buyer("redeemer")
    new_buyers = [world.enroll_buyer(f"fresh{n}") for n in range(sizes.fresh_commitments)]
    repeat_buyer = world.enroll_buyer("repeat")

    vendor_step1 = vendor_trial(world, payer, [1] * sizes.payments)
    vendor_mixed = vendor_trial(world, payer, mixed)

    # Known commitments: the ledger already holds their first redemption (index 1).
    known: list[tuple[int, Trial]] = []
    for k, count in ((1, sizes.redemptions_k1), (100, sizes.redemptions_k100)):
        cid, _ = world.open_channel(redeemer, 1 + k * count)
        first = world.redeem_envelope(redeemer, cid, 1)
        inbox = topics.inbox(BROKER, VENDOR)  # recorded: the ledger history holds it
        if refusals(world.world.net.inject(BROKER, inbox, first, world.now)):
            raise RuntimeError("broker refused the first redemption")
        known.append((k, known_commitment_trial(world, history, redeemer, cid, k, count)))

    def first_redeems(buyers: list[BuyerCore]) -> list[tuple[BuyerCore, bytes, bytes]]:
        out = []
        for buyer in buyers:
            cid, _ = world.open_channel(buyer, 1)
            out.append((buyer, cid, world.redeem_envelope(buyer, cid, 1)))
        return out

    cold = fresh_commitment_trial(world, history, first_redeems(new_buyers), "cold")
    same_buyer = first_redeems([repeat_buyer] * sizes.fresh_commitments)
    known_buyer = fresh_commitment_trial(world, history, same_buyer, "known-buyer")
    cached = fresh_commitment_trial(world, history, same_buyer, "cached")
    history.extend(world.world.net.ledger_events(BROKER))

    runs = sizes.runs
    results: list[Result] = []
    progress("vendor")
    results.append(
        measure(VENDOR_GROUP, "payment, step 1 (1 hash)", vendor_step1, runs, "no receipts sent")
    )
    average = sum(mixed) / len(mixed)
    results.append(
        measure(
            VENDOR_GROUP,
            f"payment, mixed steps 1..{MAX_STEP} (avg {average:.2f} hashes)",
            vendor_mixed,
            runs,
            "uniform random steps; no receipts sent",
        )
    )
    results.extend(receipt_results(world, payer, sizes))

    progress("broker")
    for k, trial in known:
        results.append(
            measure(
                BROKER_GROUP,
                f"redeem {k} new payword{'s' if k > 1 else ''}, known commitment",
                trial,
                runs,
                f"{k} hash{'es' if k > 1 else ''} + ledger event + reply",
            )
        )
    fresh = [
        ("new buyer", cold, "caches cleared: cert + commitment Ed25519 verified"),
        ("known buyer", known_buyer, "cert already verified: commitment Ed25519 only"),
        ("signatures cached", cached, "no Ed25519: registration work alone"),
    ]
    for label, trial, note in fresh:
        name = f"first redeem (k=1) of a new commitment, {label}"
        results.append(measure(BROKER_GROUP, name, trial, runs, note))

    progress("rejections")
    results.extend(rejection_results(world, payer, sizes))

    progress("primitives")
    _, _, sample = payment_envelopes(world, payer, [1])
    results.extend(primitive_results(sample[0], topics.inbox(VENDOR, payer.account), sizes))
    return results


def versions() -> dict[str, object]:
    """Where the figures were taken."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity) if affinity is not None else os.cpu_count(),
        "cryptography": metadata.version("cryptography"),
        "msgspec": metadata.version("msgspec"),
    }


def table(results: list[Result], info: dict[str, object], sizes: Sizes) -> str:
    """The human-readable report."""
    lines = [
        (
            f"Python {info['python']} ({info['implementation']}) on {info['platform']}, "
            f"{info['cpu_count']} CPUs ({info['cpus_usable']} usable); "
            f"cryptography {info['cryptography']}, msgspec {info['msgspec']}"
        ),
        f"median of {sizes.runs} runs after a warm-up run; GC off while timing",
    ]
    width = max(len(r.name) for r in results) + 2
    group = ""
    for result in results:
        if result.group != group:
            group = result.group
            lines += [
                "",
                group,
                f"  {'operation':<{width}}{'µs/op':>10}{'ops/s':>13}{'ops/run':>9}  note",
            ]
        lines.append(
            f"  {result.name:<{width}}{result.ns_per_op / 1000:>10.2f}"
            f"{1e9 / result.ns_per_op:>13,.0f}{result.ops:>9,}  {result.note}".rstrip()
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--runs", type=int, help="timed runs per measurement")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.runs is not None:
        if args.runs < 1:
            parser.error("--runs must be at least 1")
        sizes = dataclasses.replace(sizes, runs=args.runs)

    def progress(stage: str) -> None:
        if not args.json:
            print(f"... {stage}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    results = run(sizes, progress)
    info = versions()
    if args.json:
        report = {
            **info,
            "mode": "quick" if args.quick else "full",
            "seconds": round(time.perf_counter() - started, 2),
            "results": [r.as_dict() for r in results],
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(table(results, info, sizes))
        print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
