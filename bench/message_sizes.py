"""The size of every message type as our encoder writes it, for the device profile.

A small in-memory world (broker ``broker``, vendor ``vendor1``, buyer ``buyer1``: names of
6-7 characters, as sizes grow with them) runs enrollment, an offer, a commitment, payments
(one naming the item ``article``), receipts, redemption, on-line registration, queries, a
revocation and an error, and records every envelope it carries. Sizes are MQTT payloads
(the envelope); the topic adds its length plus a few bytes of MQTT header. A broker with a
ledger adds a signed head (about 105 bytes) to ``redeemed``, ``registered`` and ``balance``.

Run: ``uv run --frozen python bench/message_sizes.py [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import replace

from protocol.envelope import parse
from tests.support.world import default_terms, make_world


def record() -> dict[str, list[tuple[int, str]]]:
    """Every envelope the world carried, by type: (payload bytes, topic)."""
    world = make_world(vendors=0, buyers=0, record=True)
    world.enroll_vendor("vendor1")
    world.enroll_vendor("vendor2", replace(default_terms(), online=True))
    buyer = world.enroll_buyer("buyer1")
    for vendor in ("vendor1", "vendor2"):
        cid = buyer.open_channel(vendor, 10_000, world.now).commitment_id
        world.pump()
        buyer.pay(cid, 1, world.now)
        buyer.pay(cid, 5, world.now, "article")
        world.pump()
    channel = next(iter(buyer.channels.values()))
    buyer._send_payment(channel, 1, "", world.now)  # noqa: SLF001 - below the vendor's: an error
    buyer.query_balance(world.now)
    buyer.query_invoice(world.now)
    world.pump(61.0)
    for core in world.vendors.values():
        core.handle_timer(world.now)  # redeem
    buyer.handle_timer(world.now)
    world.pump()
    world.broker.handle_timer(world.now)
    world.broker.publish_ledger_head(12_345, bytes(32), world.now)
    world.pump()
    world.net.events["broker"].extend(world.broker.revoke("buyer1", world.now))
    world.pump()
    sizes: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for _, topic, payload in world.net.log:
        sizes[parse(payload).header.type].append((len(payload), topic))
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Run the world, print min and max payload per type."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    rows = {
        kind: {"min": min(s for s, _ in seen), "max": max(s for s, _ in seen), "seen": len(seen)}
        for kind, seen in sorted(record().items())
    }
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for kind, row in rows.items():
            print(f"{kind:>12} {row['min']:>6} .. {row['max']:>6} bytes  ({row['seen']} seen)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
