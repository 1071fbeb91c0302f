"""What keys in a PKCS#11 token cost the flows: file keys against SoftHSM2, in one run.

Two figures, each for in-process keys (what the ``file`` backend loads) and for every
party's keys in a SoftHSM2 token (``pkcs11`` backend, X25519 in the token):

- **broker, new commitments per second**: vendors' ``register`` of commitments from known
  buyers, end to end through the real ``BrokerService`` and its ledger (SQLite WAL, fsync,
  every commit's head signed: the one signature per commit the token makes), as
  ``bench/broker_commitments.py`` measures it (its "register, known buyer" case);
- **commit to first payment, at the buyer**: from ``open_channel`` (the buyer signs the
  commitment and derives the chain's MAC key) through the vendor's checks of the commit
  (two Ed25519 verifications, its own agreement) to the buyer holding the receipt of its
  first payment; the protocol cores in memory, so the MQTT round trip (the same for both
  backends) is left out. Each chain is with a vendor the buyer has not paid before
  (``new peer``: the token's X25519 runs) or the same vendor again (``same vendor``).

Run: ``uv run --frozen python bench/token_keys.py [--quick] [--json]``. It needs SoftHSM2
(``make setup`` installs it) and makes a throwaway token in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import broker_commitments as commitments

from agents.runtime.keys_pkcs11 import TokenSpec, create_token_keys
from protocol.crypto import AgentKeys
from protocol.events import ReceiptReceived
from tests.support.softhsm import soft_token
from tests.support.world import World, make_world, seeded_identity

KeysFor = Callable[[str], AgentKeys]


def token_keys(token_spec: Callable[[str], TokenSpec], directory: Path) -> KeysFor:
    """Keys generated in the token, one set per party, made once per name."""
    made: dict[str, AgentKeys] = {}

    def keys(name: str) -> AgentKeys:
        if name not in made:
            made[name] = create_token_keys(
                directory / f"{name}.key",
                token_spec(name),
                agreement="token",
            )
        return made[name]

    return keys


def broker_rate(keys: KeysFor, sizes: commitments.Sizes, directory: Path) -> float:
    """New commitments per second, end to end through ``BrokerService`` (median of runs)."""
    setting = commitments.Setting(sizes, keys)
    load = setting.load("register", setting.buyers, sizes.commitments)
    commitments.log_decisions_to_null(log=True)
    samples = asyncio.run(commitments.measure_service(setting, load, sizes, directory))
    return statistics.median(len(load.payloads) / (s.wall_ns / 1e9) for s in samples)


def first_payment_ms(keys: KeysFor, chains: int, *, vendors: int) -> float:
    """Median milliseconds from ``open_channel`` to the first payment's receipt."""
    world: World = make_world(vendors=vendors, buyers=1, keys=keys)
    buyer = world.buyers["buyer1"]
    names = list(world.vendors)
    took = []
    for n in range(chains):
        vendor = names[n % len(names)]
        before = len([e for e in world.net.events["buyer1"] if isinstance(e, ReceiptReceived)])
        started = time.perf_counter()
        opened = buyer.open_channel(vendor, 1_000, world.now)
        world.pump()
        buyer.pay(opened.commitment_id, 1, world.now)
        world.pump()
        took.append(time.perf_counter() - started)
        after = len([e for e in world.net.events["buyer1"] if isinstance(e, ReceiptReceived)])
        if after <= before:
            raise RuntimeError(f"chain {n}: no receipt for the first payment")
    return statistics.median(took) * 1e3


def main(argv: list[str] | None = None) -> int:
    """Measure both backends and print a table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (seconds)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    sizes = commitments.QUICK if args.quick else commitments.FULL
    chains = 5 if args.quick else 200
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="micropay-token-bench-") as scratch:
        root = Path(scratch)
        with soft_token(root / "hsm") as token:
            backends: dict[str, KeysFor] = {
                "file": seeded_identity,
                "pkcs11": token_keys(token.spec, root / "descriptors"),
            }
            (root / "descriptors").mkdir(mode=0o700)
            for name, keys in backends.items():
                print(f"... {name}: broker commitments", file=sys.stderr, flush=True)
                where = root / f"ledger-{name}"
                where.mkdir()
                rate = broker_rate(keys, sizes, where)
                print(f"... {name}: commit to first payment", file=sys.stderr, flush=True)
                results[name] = {
                    "broker_commitments_per_s": rate,
                    "first_payment_ms_new_peer": first_payment_ms(keys, chains, vendors=chains),
                    "first_payment_ms_same_vendor": first_payment_ms(keys, chains, vendors=1),
                }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    file, held = results["file"], results["pkcs11"]
    print(f"{'':<40}{'file':>12}{'pkcs11':>12}{'ratio':>9}")
    for key, label in (
        ("broker_commitments_per_s", "broker: new commitments/s"),
        ("first_payment_ms_new_peer", "commit to 1st payment, new vendor (ms)"),
        ("first_payment_ms_same_vendor", "commit to 1st payment, same vendor (ms)"),
    ):
        print(f"{label:<40}{file[key]:>12,.2f}{held[key]:>12,.2f}{held[key] / file[key]:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
