"""What a buyer's chain costs in memory and per payment: every word kept, or every k-th.

A device cannot hold 32 bytes per unit of a long chain; a checkpointed chain keeps every
k-th word and recomputes the others, at most k - 1 hashes per word, about one per unit when
payments go up the chain in order (docs/PROTOCOL.md 16.3). For each length n and interval k
this measures: the bytes the chain holds after paying it through (tracemalloc, so Python
object overhead included), the peak while building it, the build time, and the time to
produce the payword of a payment: 1-unit payments in order, 100-unit payments in order,
and words asked in random order (the worst case: a segment recomputed almost every time).

Run: ``uv run --frozen python bench/chain_memory.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from math import isqrt

from protocol.chain import HashChain, PaywordChain, walk
from protocol.chain_checkpoints import CheckpointedChain

SEED = bytes(range(32))
JUMP = 100
RANDOM_WORDS = 2_000
FULL_LENGTHS = (10**3, 10**4, 10**5, 10**6)
QUICK_LENGTHS = (10**3, 10**4)
FIXED_INTERVALS = (16, 4096)


@dataclass(frozen=True, slots=True)
class Row:
    """One chain measured: its memory and what producing a payword costs."""

    length: int
    kind: str  # "full" or "k=<interval>"
    held_bytes: int
    peak_bytes: int
    build_ms: float
    us_per_unit_payment: float
    us_per_jump_payment: float
    us_per_random_word: float


def intervals(length: int) -> list[int]:
    """The fixed intervals that fit the chain, and its square root (the default)."""
    return sorted({k for k in (*FIXED_INTERVALS, isqrt(length)) if 1 < k < length})


def make(length: int, interval: int | None) -> PaywordChain:
    """The full chain (``interval`` None) or the checkpointed one."""
    if interval is None:
        return HashChain(SEED, length)
    return CheckpointedChain(SEED, length, interval)


def memory(length: int, interval: int | None) -> tuple[int, int]:
    """Bytes held after paying the chain through (a segment cached), and the build's peak."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        chain = make(length, interval)
        peak = tracemalloc.get_traced_memory()[1] - base
        chain.word(1)  # a whole segment, as the first payment on a chain fills it
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    del chain
    return held, peak


def per_word(chain: PaywordChain, indices: list[int]) -> float:
    """Microseconds per ``word`` call over ``indices``, the collector held off."""
    word = chain.word
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for index in indices:
            word(index)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / len(indices) / 1000


def measure(length: int, interval: int | None, rng: random.Random) -> Row:
    """All the figures of one chain; each timed part starts from a fresh chain."""
    held, peak = memory(length, interval)
    start = time.perf_counter()
    chain = make(length, interval)
    build_ms = (time.perf_counter() - start) * 1000
    unit = per_word(chain, list(range(1, length + 1)))
    jumps = per_word(make(length, interval), list(range(JUMP, length + 1, JUMP)) or [length])
    scattered = per_word(
        make(length, interval), [rng.randrange(length + 1) for _ in range(RANDOM_WORDS)]
    )
    kind = "full" if interval is None else f"k={interval}"
    return Row(length, kind, held, peak, round(build_ms, 1), unit, jumps, scattered)


def us_per_hash() -> float:
    """One chain step here and now: the unit the other timings are best read in."""
    steps = 200_000
    gc.disable()
    try:
        start = time.perf_counter_ns()
        walk(SEED, steps, steps)
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return elapsed / steps / 1000


def run(lengths: tuple[int, ...], progress: Callable[[str], None]) -> list[Row]:
    """Every length, full and at each interval, in one run."""
    rng = random.Random(1)
    rows = []
    for length in lengths:
        for interval in (None, *intervals(length)):
            progress(f"n={length} {'full' if interval is None else f'k={interval}'}")
            rows.append(measure(length, interval, rng))
    return rows


def ratios(rows: list[Row]) -> list[dict[str, object]]:
    """Each checkpointed chain against the full one of the same length."""
    full = {row.length: row for row in rows if row.kind == "full"}
    out: list[dict[str, object]] = []
    for row in rows:
        if row.kind == "full":
            continue
        base = full[row.length]
        out.append({
            "length": row.length,
            "kind": row.kind,
            "memory_saved_x": round(base.held_bytes / row.held_bytes, 1),
            "unit_payment_slower_x": round(row.us_per_unit_payment / base.us_per_unit_payment, 1),
            "jump_payment_slower_x": round(row.us_per_jump_payment / base.us_per_jump_payment, 1),
            "random_word_slower_x": round(row.us_per_random_word / base.us_per_random_word, 1),
        })  # fmt: skip
    return out


def size(count: int) -> str:
    """Bytes in the largest unit that keeps a number of at least 1."""
    for unit, scale in (("MB", 10**6), ("KB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def table(rows: list[Row]) -> str:
    """The rows and their ratios, as text."""
    saved = {(r["length"], r["kind"]): r for r in ratios(rows)}
    header = (
        f"{'n':>8} {'chain':>7} {'held':>9} {'peak':>9} {'build':>9} "
        f"{'µs/1-unit':>10} {'µs/100-unit':>12} {'µs/random':>10}  vs full"
    )
    lines = [header]
    for row in rows:
        ratio = saved.get((row.length, row.kind))
        versus = (
            f"{ratio['memory_saved_x']}x less memory, 1-unit {ratio['unit_payment_slower_x']}x,"
            f" 100-unit {ratio['jump_payment_slower_x']}x, random {ratio['random_word_slower_x']}x"
            if ratio
            else ""
        )
        lines.append(
            f"{row.length:>8} {row.kind:>7} {size(row.held_bytes):>9} {size(row.peak_bytes):>9}"
            f" {row.build_ms:>7.1f}ms {row.us_per_unit_payment:>10.3f}"
            f" {row.us_per_jump_payment:>12.3f} {row.us_per_random_word:>10.2f}  {versus}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="n up to 10^4 (a second or two)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    def progress(stage: str) -> None:
        if not args.json:
            print(f"... {stage}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    hashing = us_per_hash()
    rows = run(QUICK_LENGTHS if args.quick else FULL_LENGTHS, progress)
    if args.json:
        report = {
            "python": platform.python_version(),
            "mode": "quick" if args.quick else "full",
            "seconds": round(time.perf_counter() - started, 2),
            "us_per_hash": round(hashing, 3),
            "rows": [asdict(row) for row in rows],
            "ratios": ratios(rows),
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(f"one chain step (SHA-256): {hashing:.3f} µs\n")
        print(table(rows))
        print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
