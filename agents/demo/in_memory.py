"""``make demo`` until the daemons land: the whole PayWord life cycle in one process.

A broker, two vendors and three buyers run their real protocol cores; the messages
travel through an in-memory stand-in for Mosquitto that routes by the same topics.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from protocol.broker import BrokerCore
from protocol.buyer import BuyerCore
from protocol.crypto import Identity
from protocol.events import MessageRejected, PaymentAccepted, PeerError
from protocol.memory import MemoryNetwork
from protocol.messages import OfferItem
from protocol.vendor import VendorCore, VendorTerms

VENDORS = {
    "news-stand": VendorTerms(unit_value=1, max_jump=50, items=(OfferItem("article", 5),)),
    "charger-7": VendorTerms(unit_value=2, max_jump=200, items=(OfferItem("kWh", 30),)),
}
BUYERS = ("alice", "bob", "carol")
STEPS = (1, 1, 1, 2, 3, 5, 10, 30, 120)
CHAIN_LENGTH = 1_000_000


def _item(vendor: str, units: int) -> str:
    """The vendor's item when ``units`` pay for it; a smaller payment buys nothing by name."""
    terms = VENDORS[vendor]
    (offered,) = terms.items
    return offered.item if units * terms.unit_value >= offered.price else ""


@dataclass
class Demo:
    """The running cores and what the buyers paid."""

    now: float
    net: MemoryNetwork = field(default_factory=MemoryNetwork)
    broker: BrokerCore = field(default_factory=lambda: BrokerCore("broker", Identity.generate()))
    vendors: dict[str, VendorCore] = field(default_factory=dict)
    buyers: dict[str, BuyerCore] = field(default_factory=dict)
    channels: dict[tuple[str, str], bytes] = field(default_factory=dict)
    paid: Counter[tuple[str, str]] = field(default_factory=Counter)

    def enroll_everybody(self) -> None:
        """Open accounts, enroll every agent with its token, publish offers, open chains."""
        broker, net, now = self.broker, self.net, self.now
        net.attach(broker, now)
        broker.publish_identity(now)
        for name, terms in VENDORS.items():
            token = net.open_account(broker, name, "vendor", 0, "EUR", now)
            vendor = VendorCore(name, Identity.generate(), broker.info, terms)
            net.attach(vendor, now)
            vendor.enroll(token, now)
            net.pump(now)
            vendor.publish_offer(now)
            self.vendors[name] = vendor
        for name in BUYERS:
            token = net.open_account(broker, name, "buyer", 100_000_000, "EUR", now)
            buyer = BuyerCore(name, Identity.generate(), broker.info)
            net.attach(buyer, now)
            buyer.enroll(token, now)
            self.buyers[name] = buyer
        net.pump(now)
        for buyer_name, buyer in self.buyers.items():
            for vendor_name in self.vendors:
                opened = buyer.open_channel(vendor_name, CHAIN_LENGTH // 10, now)
                self.channels[buyer_name, vendor_name] = opened.commitment_id
        net.pump(now)

    def pay(self, count: int, rng: random.Random) -> None:
        """Random buyers pay random vendors in mixed step sizes, with a progress line."""
        pairs = sorted(self.channels)
        for number in range(count):
            pair = rng.choice(pairs)
            units = rng.choice(STEPS)
            self.buyers[pair[0]].pay(self.channels[pair], units, self.now, _item(pair[1], units))
            self.paid[pair] += units * VENDORS[pair[1]].unit_value
            if number % 50 == 49:
                self.now += 0.01
                self.net.pump(self.now)
            if number % 1000 == 0:
                sys.stderr.write(f"\r  paying {number:>7}/{count}")
        self.net.pump(self.now)
        sys.stderr.write(f"\r  paying {count:>7}/{count}\n")

    def redeem(self) -> None:
        """Every vendor redeems what it holds."""
        for vendor in self.vendors.values():
            vendor.redeem_all(self.now)
        self.net.pump(self.now)

    def report(self, payments: int, elapsed: float) -> bool:
        """Print the summary table; whether every total balances."""
        totals = self.broker.totals
        accepted = Counter[str]()
        for name in self.vendors:
            for event in self.net.events[name]:
                if isinstance(event, PaymentAccepted):
                    accepted[name] += event.amount
        problems = [
            event
            for events in self.net.events.values()
            for event in events
            if isinstance(event, MessageRejected | PeerError)
        ]
        out = sys.stdout.write
        out(f"\n{payments} payments in {elapsed:.2f} s through the protocol cores, in memory\n\n")
        out(f"{'buyer':<10}{'vendor':<12}{'paid':>10}{'debited':>10}\n")
        for (buyer_name, vendor_name), amount in sorted(self.paid.items()):
            debited = totals.amounts.get((buyer_name, vendor_name), 0)
            out(f"{buyer_name:<10}{vendor_name:<12}{amount:>10}{debited:>10}\n")
        out(f"\n{'vendor':<22}{'accepted':>10}{'credited':>10}\n")
        for name in self.vendors:
            out(f"{name:<22}{accepted[name]:>10}{totals.credited.get(name, 0):>10}\n")
        debited, credited = sum(totals.debited.values()), sum(totals.credited.values())
        expected = sum(self.paid.values())
        balanced = debited == credited == expected == sum(accepted.values()) and not problems
        out(f"\ntotal debited {debited}, total credited {credited} (EUR minor units)\n")
        out(f"rejected messages: {len(problems)}\n")
        out(f"result: {'BALANCED' if balanced else 'NOT BALANCED'}\n")
        return balanced


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.demo.in_memory",
        description="Run enroll, commit, pay, redeem and billing through the protocol cores.",
    )
    parser.add_argument("--payments", type=int, default=10_000, help="payments (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the payment mix (default 1)")
    args = parser.parse_args(argv)
    if args.payments < 1:
        parser.error("--payments must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 only if every total balances."""
    args = parse_args(argv)
    started = time.perf_counter()
    demo = Demo(now=time.time())
    demo.enroll_everybody()
    demo.pay(args.payments, random.Random(args.seed))  # noqa: S311 - a payment mix, not a secret
    demo.redeem()
    return 0 if demo.report(args.payments, time.perf_counter() - started) else 1


if __name__ == "__main__":
    sys.exit(main())
