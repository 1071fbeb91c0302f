"""``micropay demo --in-memory``: the whole payment life cycle in one process.

A broker, two vendors and three buyers run their real protocol cores; the messages
travel through an in-memory stand-in for Mosquitto that routes by the same topics.
``--scheme`` picks PayWord chains, Millicent scrip, or both side by side, as the process
demo does (``agents/demo/schemes.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from agents.demo.schemes import MINT_VALUE, SCHEMES, SCRIP_VENDORS, Scheme, how, paid_by, pay_by
from protocol.broker import BrokerCore
from protocol.buyer import BuyerCore
from protocol.crypto import Identity
from protocol.events import MessageRejected, PaymentAccepted, PeerError, ScripAccepted
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
    scheme: Scheme = "payword"
    net: MemoryNetwork = field(default_factory=MemoryNetwork)
    broker: BrokerCore = field(default_factory=lambda: BrokerCore("broker", Identity.generate()))
    vendors: dict[str, VendorCore] = field(default_factory=dict)
    buyers: dict[str, BuyerCore] = field(default_factory=dict)
    channels: dict[tuple[str, str], bytes] = field(default_factory=dict)
    paid: Counter[tuple[str, str]] = field(default_factory=Counter)
    count: Counter[tuple[str, str]] = field(default_factory=Counter)
    minted: Counter[tuple[str, str]] = field(default_factory=Counter)

    def terms(self, vendor: str) -> VendorTerms:
        """The vendor's terms, taking scrip (and checking it on-line) as the scheme says."""
        check = SCRIP_VENDORS[self.scheme].get(vendor)
        if check is None:
            return VENDORS[vendor]
        return dataclasses.replace(VENDORS[vendor], scrip=True, scrip_online=check == "on-line")

    def enroll_everybody(self) -> None:
        """Open accounts, enroll every agent with its token, publish offers, open chains."""
        broker, net, now = self.broker, self.net, self.now
        net.attach(broker, now)
        broker.publish_identity(now)
        for name in VENDORS:
            token = net.open_account(broker, name, "vendor", 0, "EUR", now)
            vendor = VendorCore(name, Identity.generate(), broker.info, self.terms(name))
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
                if pay_by(self.scheme, buyer_name, vendor_name) == "scrip":
                    continue
                opened = buyer.open_channel(vendor_name, CHAIN_LENGTH // 10, now)
                self.channels[buyer_name, vendor_name] = opened.commitment_id
        net.pump(now)

    def pay(self, count: int, rng: random.Random) -> None:
        """Random buyers pay random vendors in mixed step sizes, with a progress line."""
        pairs = sorted((b, v) for b in self.buyers for v in self.vendors)
        for number in range(count):
            pair = rng.choice(pairs)
            if pair in self.channels:
                units = rng.choice(STEPS)
                self.buyers[pair[0]].pay(
                    self.channels[pair], units, self.now, _item(pair[1], units)
                )
                self.paid[pair] += units * VENDORS[pair[1]].unit_value
            else:
                self.pay_scrip(*pair)
            self.count[pair] += 1
            if number % 50 == 49:
                self.now += 0.01
                self.net.pump(self.now)
            if number % 1000 == 0:
                sys.stderr.write(f"\r  paying {number:>7}/{count}")
        self.net.pump(self.now)
        sys.stderr.write(f"\r  paying {count:>7}/{count}\n")

    def pay_scrip(self, buyer_name: str, vendor_name: str) -> None:
        """Buy the vendor's item with scrip, minting first when short; wait for the change."""
        buyer, (offered,) = self.buyers[buyer_name], VENDORS[vendor_name].items
        if not [v for v in buyer.scrip_value(vendor_name, self.now) if v >= offered.price]:
            buyer.mint(vendor_name, MINT_VALUE, self.now)
            self.net.pump(self.now)
            self.minted[buyer_name, vendor_name] += MINT_VALUE
        buyer.pay_scrip(vendor_name, offered.price, self.now, offered.item)
        self.net.pump(self.now)  # the answer carries the change the next payment spends
        self.paid[buyer_name, vendor_name] += offered.price

    def redeem(self) -> None:
        """Every vendor redeems the chains it holds and deposits the scrip it took."""
        for vendor in self.vendors.values():
            vendor.redeem_all(self.now)
            vendor.deposit_all(self.now)
        self.net.pump(self.now)

    def report(self, payments: int, elapsed: float) -> bool:
        """Print the summary table; whether every total balances."""
        totals = self.broker.totals
        accepted = Counter[str]()
        for name in self.vendors:
            for event in self.net.events[name]:
                if isinstance(event, PaymentAccepted):
                    accepted[name] += event.amount
                elif isinstance(event, ScripAccepted):
                    accepted[name] += event.price
        problems = [
            event
            for events in self.net.events.values()
            for event in events
            if isinstance(event, MessageRejected | PeerError)
        ]
        out = sys.stdout.write
        out(f"\n{payments} payments in {elapsed:.2f} s through the protocol cores, in memory\n\n")
        scrip = self.scheme != "payword"
        out(f"{'buyer':<10}{'vendor':<12}{'paid':>10}{'debited':>10}")
        out("  paid by\n" if scrip else "\n")
        for (buyer_name, vendor_name), amount in sorted(self.paid.items()):
            debited = totals.amounts.get((buyer_name, vendor_name), 0)
            out(f"{buyer_name:<10}{vendor_name:<12}{amount:>10}{debited:>10}")
            if not scrip:
                out("\n")
            elif (buyer_name, vendor_name) in self.channels:
                out("  PayWord\n")
            else:
                out(f"  {paid_by(self.scheme, vendor_name)}\n")
        out(f"\n{'vendor':<22}{'accepted':>10}{'credited':>10}\n")
        for name in self.vendors:
            out(f"{name:<22}{accepted[name]:>10}{totals.credited.get(name, 0):>10}\n")
        debited, credited = sum(totals.debited.values()), sum(totals.credited.values())
        expected = sum(self.paid.values())
        balanced = debited == credited == expected == sum(accepted.values()) and not problems
        out(f"\ntotal debited {debited}, total credited {credited} (EUR minor units)\n")
        if scrip:
            balanced = self.report_scrip() and balanced
        out(f"rejected messages: {len(problems)}\n")
        out(f"result: {'BALANCED' if balanced else 'NOT BALANCED'}\n")
        return balanced

    def report_scrip(self) -> bool:
        """The broker's scrip totals; whether minted = credited + returned + outstanding.

        Outstanding scrip stays reserved, not debited, until the vendor deposits it or its
        deadline returns it (docs/SCHEMES.md 3.6); the buyers hold exactly that much.
        """
        records = self.broker.scrip.records.values()
        minted = sum(record.scrip.value for record in records)
        credited = sum(record.credited for record in records)
        returned = sum(record.returned for record in records)
        outstanding = sum(record.outstanding for record in records)
        held = sum(
            sum(buyer.scrip_value(vendor, self.now))
            for buyer in self.buyers.values()
            for vendor in self.vendors
        )
        spent = sum(self.paid[pair] for pair in self.paid if pair not in self.channels)
        out = sys.stdout.write
        out(f"scrip minted {minted}, credited {credited}, returned {returned},")
        out(f" outstanding {outstanding}\n")
        conserved = minted == credited + returned + outstanding
        agreed = (minted, credited, outstanding) == (sum(self.minted.values()), spent, held)
        verdict = "HOLDS" if conserved and agreed else "DOES NOT HOLD"
        out(f"scrip conservation: {verdict} (buyers bought {sum(self.minted.values())},")
        out(f" spent {spent}, hold {held})\n")
        return conserved and agreed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.demo.in_memory",
        description="Run enroll, commit, pay, redeem and billing through the protocol cores.",
    )
    parser.add_argument("--payments", type=int, default=10_000, help="payments (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the payment mix (default 1)")
    parser.add_argument(
        "--scheme", choices=SCHEMES, default="payword", help="how the buyers pay (default payword)"
    )
    args = parser.parse_args(argv)
    if args.payments < 1:
        parser.error("--payments must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 only if every total balances."""
    args = parse_args(argv)
    started = time.perf_counter()
    demo = Demo(now=time.time(), scheme=args.scheme)
    demo.enroll_everybody()
    if demo.scheme != "payword":
        sys.stderr.write(f"  {how(demo.scheme)}\n")
    demo.pay(args.payments, random.Random(args.seed))  # noqa: S311 - a payment mix, not a secret
    demo.redeem()
    return 0 if demo.report(args.payments, time.perf_counter() - started) else 1


if __name__ == "__main__":
    sys.exit(main())
