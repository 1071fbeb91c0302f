"""What a private-key operation costs with file keys and with keys in a SoftHSM2 token.

Every protocol signature (a commitment, a certificate, an envelope, a ledger head) and
every first agreement with a peer pays this; the token's figures bound how many of those a
process can make. Token keys are measured in both agreement modes: X25519 in the token
(``token``) and an in-process scalar sealed by the token (``sealed``). ``shared_secret``
is timed against fresh peers (the cache missed) and against one peer (the cache hit).
Each figure is the median µs per operation over several runs, after a warm-up.

Run: ``uv run --frozen python bench/key_backends.py [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agents.runtime.keys_pkcs11 import create_token_keys
from protocol.crypto import TAG_COMMITMENT, AgentKeys, Identity
from tests.support.softhsm import soft_token

DATA = bytes(range(32))


def per_op_us(operation: Callable[[int], object], ops: int, runs: int) -> float:
    """Median µs per call of ``operation(i)`` for ``i`` in ``range(ops)``."""
    operation(0)
    timings = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        for index in range(ops):
            operation(index)
        timings.append((time.perf_counter_ns() - start) / ops / 1000)
    return statistics.median(timings)


def measure(keys: AgentKeys, ops: int, runs: int) -> dict[str, float]:
    """µs per sign, shared_secret (fresh peer, cached peer) and derive_secret."""
    peers = [
        X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        for _ in range(ops * runs + 2)  # the cached peer, the warm-up, then one per call
    ]
    fresh = iter(peers[1:])
    infos = [index.to_bytes(4, "big") for index in range(ops)]
    return {
        "sign": per_op_us(lambda _: keys.sign(TAG_COMMITMENT, DATA), ops, runs),
        "shared_secret (new peer)": per_op_us(lambda _: keys.shared_secret(next(fresh)), ops, runs),
        "shared_secret (cached)": per_op_us(lambda _: keys.shared_secret(peers[0]), ops, runs),
        "derive_secret": per_op_us(lambda index: keys.derive_secret(infos[index]), ops, runs),
    }


def main() -> None:
    """Measure the three key stores and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few operations (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    ops, runs = (50, 2) if args.quick else (1000, 5)

    results = {"file": measure(Identity.generate(), ops, runs)}
    with tempfile.TemporaryDirectory() as scratch, soft_token(Path(scratch) / "softhsm") as token:
        for mode in ("token", "sealed"):
            path = Path(scratch) / "keys" / f"{mode}.json"
            keys = create_token_keys(path, token.spec(f"bench-{mode}"), mode)
            results[f"softhsm2 ({mode} agreement)"] = measure(keys, ops, runs)

    if args.json:
        print(json.dumps(results, indent=2))
        return
    backends = list(results)
    print(f"µs per operation, median of {runs} runs of {ops}")
    print(f"{'operation':<26}" + "".join(f"{name:>28}" for name in backends))
    for operation, file_us in results["file"].items():
        cells = [f"{file_us:>28.1f}"]
        for name in backends[1:]:
            token_us = results[name][operation]
            cells.append(f"{token_us:>16.1f} (x{token_us / file_us:>7.2f})")
        print(f"{operation:<26}" + "".join(cells))


if __name__ == "__main__":
    main()
