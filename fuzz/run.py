"""Long fuzzing runs over every untrusted-input surface (``make fuzz``).

libFuzzer drives the inputs through atheris, guided by coverage of ``protocol``, when the
``fuzz`` dependency group is installed; without it a built-in mutator works from the same
seeds. Both feed ``Rig.run``, which checks the invariants ``tests/fuzz`` checks, and the run
ends with a report: inputs, rate, error types seen, memory. A finding prints its input as
hex, is saved under ``fuzz/crashes/`` and fails the run; ``python -m fuzz.run FILE...``
replays saved inputs against a fresh rig.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import random
import resource
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from fuzz.surfaces import Rig

HERE: Final = Path(__file__).resolve().parent
DEFAULT_RUNS: Final = 1_000_000
TICK: Final = 0.001
"""Simulated seconds per input: replay windows, timers and expiry move as in a live agent."""
TIMERS_EVERY: Final = 1_000


def _load_atheris() -> ModuleType | None:
    try:
        return importlib.import_module("atheris")
    except ImportError:
        return None


def _load_surfaces(atheris: ModuleType | None) -> ModuleType:
    """Import the rig, under atheris' coverage instrumentation when there is one."""
    if atheris is None:
        return importlib.import_module("fuzz.surfaces")
    with atheris.instrument_imports(include=["protocol"]):
        return importlib.import_module("fuzz.surfaces")


def _rss_mb() -> float:
    """The current resident set, from ``/proc`` (0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RandomSource:
    """``Source`` over ``random.Random``, for the built-in mutator."""

    def __init__(self, rnd: random.Random) -> None:
        self._rnd = rnd

    def below(self, n: int) -> int:
        """A choice in ``0 .. n - 1``."""
        return self._rnd.randrange(n) if n > 1 else 0

    def blob(self, max_size: int) -> bytes:
        """Up to ``max_size`` random bytes."""
        return self._rnd.randbytes(self._rnd.randrange(max_size + 1))


class Campaign:
    """One run: feeds inputs to a rig, rebuilds it now and then, keeps the figures."""

    def __init__(  # noqa: PLR0913 - one argument per knob
        self,
        surfaces: ModuleType,
        *,
        runs: int,
        engine: str,
        crashes: Path,
        rebuild_every: int,
        report_every: int,
        out: TextIO | None = None,
    ) -> None:
        self.surfaces = surfaces
        self.runs = runs
        self.engine = engine
        self.crashes = crashes
        self.rebuild_every = rebuild_every
        self.report_every = report_every
        self.out = out or sys.stdout
        self.rig: Rig = surfaces.Rig(chain_length=20_000)
        self.count = 0
        self.by_surface: Counter[str] = Counter()
        self.seconds_by_surface: defaultdict[str, float] = defaultdict(float)
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.checkpoints: list[str] = []
        self.slowest = (0.0, b"")
        self.started = time.perf_counter()

    def one(self, data: bytes) -> bool:
        """Run one input; ``False`` (after reporting the finding) if it broke something."""
        self.count += 1
        try:
            self.rig.tick(TICK)
            if self.count % TIMERS_EVERY == 0:
                self.rig.run_timers()
            started = time.perf_counter()
            surface = self.rig.run(data)
            elapsed = time.perf_counter() - started
        except Exception as exc:  # noqa: BLE001 - whatever escapes is the finding
            self._finding(data, exc)
            return False
        self.by_surface[surface] += 1
        self.seconds_by_surface[surface] += elapsed
        if elapsed > self.slowest[0]:
            self.slowest = (elapsed, data)
        if self.count % self.report_every == 0:
            self._checkpoint()
        if self.count % self.rebuild_every == 0:  # a fresh world; process-wide caches stay
            self._fold_rig()
            self.rig = self.surfaces.Rig(chain_length=20_000)
        return True

    def _fold_rig(self) -> None:
        self.errors.update(self.rig.errors)
        self.outcomes.update(self.rig.outcomes)
        self.rig.errors.clear()
        self.rig.outcomes.clear()

    def _checkpoint(self) -> None:
        rig = self.rig
        elapsed = time.perf_counter() - self.started
        caches = self.surfaces.cache_sizes()
        line = (
            f"{self.count:>10,} inputs {elapsed:7.1f} s {self.count / elapsed:6,.0f}/s  "
            f"rss {_rss_mb():6.1f} MB  python blocks {sys.getallocatedblocks():>9,}  "
            f"broker chains {len(rig.broker.chains):>4}  verified-object caches {caches}"
        )
        self.checkpoints.append(line)
        print(line, file=sys.stderr, flush=True)

    def _finding(self, data: bytes, exc: BaseException) -> None:
        self.crashes.mkdir(parents=True, exist_ok=True)
        path = self.crashes / f"crash-{hashlib.sha256(data).hexdigest()[:16]}.bin"
        path.write_bytes(data)
        print("".join(traceback.format_exception(exc)), file=self.out)
        print(f"FINDING at input {self.count}: {type(exc).__name__}: {exc}", file=self.out)
        print(f"input ({len(data)} bytes, hex): {data.hex()}", file=self.out)
        print(f"saved to {path}; replay: python -m fuzz.run {path}", file=self.out)
        self.report(finding=f"{type(exc).__name__}: {exc}")

    def report(self, finding: str = "none") -> None:
        """The figures of the run so far."""
        self._fold_rig()
        elapsed = time.perf_counter() - self.started
        out = self.out

        def table(counter: Counter[str]) -> str:
            return ", ".join(f"{name} {n:,}" for name, n in counter.most_common()) or "-"

        print(f"\nfuzz report ({self.engine})", file=out)
        print(f"  inputs          {self.count:,}", file=out)
        print(f"  time            {elapsed:,.1f} s", file=out)
        print(f"  rate            {self.count / max(elapsed, 1e-9):,.0f} inputs/s", file=out)
        surfaces = ", ".join(
            f"{name} {n:,} ({self.seconds_by_surface[name] / n * 1e6:,.0f} µs each)"
            for name, n in self.by_surface.most_common()
        )
        print(f"  by surface      {surfaces}", file=out)
        print(f"  outcomes        {table(self.outcomes)}", file=out)
        print(f"  error types     {len(self.errors)}: {table(self.errors)}", file=out)
        print(f"  slowest input   {self.slowest[0] * 1000:,.1f} ms", file=out)
        print(f"  memory          peak RSS {_peak_rss_mb():,.1f} MB, now {_rss_mb():,.1f} MB",
              file=out)  # fmt: skip
        for line in self.checkpoints:
            print(f"    {line}", file=out)
        print(f"  unexpected      {finding}", file=out, flush=True)


Mutator = Callable[[RandomSource, bytes, list[bytes]], bytes]


def builtin_inputs(seeds: list[bytes], runs: int, seed: int, mutate: Mutator) -> Iterator[bytes]:
    """Seeds mutated one to four times, and some pure noise, ``runs`` inputs in all."""
    rnd = random.Random(seed)
    source = RandomSource(rnd)
    for _ in range(runs):
        if rnd.randrange(4) == 0:
            yield bytes([rnd.randrange(256)]) + rnd.randbytes(rnd.randrange(512))
            continue
        base = rnd.choice(seeds)
        mode = base[:1] if rnd.randrange(8) else bytes([rnd.randrange(256)])
        yield mode + mutate(source, base[1:], seeds)


def fuzz_builtin(campaign: Campaign, seed: int) -> int:
    """Run the built-in mutator to the end; the process's exit code."""
    seeds = campaign.rig.seeds()
    for data in builtin_inputs(seeds, campaign.runs, seed, campaign.surfaces.mutate):
        if not campaign.one(data):
            return 1
    campaign.report()
    return 0


def fuzz_atheris(atheris: ModuleType, campaign: Campaign, seed: int, max_len: int) -> int:
    """Hand the campaign to libFuzzer; returns only if libFuzzer stops on its own."""
    corpus = HERE / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for data in campaign.rig.seeds():
        path = corpus / f"seed-{hashlib.sha256(data).hexdigest()[:16]}"
        if not path.exists():
            path.write_bytes(data)
    campaign.crashes.mkdir(parents=True, exist_ok=True)

    def target(data: bytes) -> None:
        if not campaign.one(data):
            sys.stdout.flush()
            os._exit(1)
        if campaign.count >= campaign.runs:
            campaign.report()
            sys.stdout.flush()
            os._exit(0)

    atheris.Setup(
        [
            sys.argv[0],
            str(corpus),
            f"-seed={seed}",
            f"-max_len={max_len}",
            "-rss_limit_mb=2048",
            "-timeout=60",
            f"-artifact_prefix={campaign.crashes}/",
            "-verbosity=0",
            "-print_final_stats=0",
        ],
        target,
    )
    atheris.Fuzz()
    campaign.report(finding="libFuzzer stopped early")
    return 1


def replay(surfaces: ModuleType, files: list[Path]) -> int:
    """Run saved inputs, each against a fresh rig; non-zero if any still breaks something."""
    failed = 0
    for path in files:
        rig = surfaces.Rig()
        try:
            surface = rig.run(path.read_bytes())
        except Exception:  # noqa: BLE001 - reporting is the point
            failed += 1
            print(f"{path}: FAILS\n{traceback.format_exc()}")
        else:
            print(f"{path}: ok ({surface}; {dict(rig.errors) or 'no errors'})")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run (or replay); the exit code."""
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__)
    parser.add_argument("files", nargs="*", type=Path, help="saved inputs to replay")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-len", type=int, default=8192)
    parser.add_argument("--rebuild-every", type=int, default=25_000)
    parser.add_argument("--report-every", type=int, default=100_000)
    parser.add_argument("--crashes", type=Path, default=HERE / "crashes")
    args = parser.parse_args(argv)
    atheris = _load_atheris() if args.engine != "builtin" else None
    if args.engine == "atheris" and atheris is None:
        parser.error("atheris is not installed: uv sync --group fuzz")
    surfaces = _load_surfaces(atheris)
    if args.files:
        return replay(surfaces, args.files)
    campaign = Campaign(
        surfaces,
        runs=args.runs,
        engine="atheris (libFuzzer, coverage-guided)" if atheris else "built-in mutator",
        crashes=args.crashes,
        rebuild_every=args.rebuild_every,
        report_every=args.report_every,
    )
    if atheris is None:
        return fuzz_builtin(campaign, args.seed)
    return fuzz_atheris(atheris, campaign, args.seed, args.max_len)


if __name__ == "__main__":
    sys.exit(main())
