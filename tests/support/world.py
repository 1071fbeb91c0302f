"""Seeded identities and a small in-memory world: one broker, vendors, buyers, enrolled.

Everything is derived from names and a fixed clock, so tests, benchmarks and fuzzers that
build the same world get the same bytes every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from protocol.broker import BrokerCore, BrokerPolicy
from protocol.buyer import BuyerCore
from protocol.crypto import AgentKeys, Identity
from protocol.events import CertificateReceived
from protocol.memory import MemoryNetwork
from protocol.messages import OfferItem
from protocol.vendor import VendorCore, VendorTerms

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
E = TypeVar("E")


def seeded_identity(name: str) -> Identity:
    """Deterministic keys from a name, so tests and vectors are reproducible."""
    return Identity.from_seeds(
        hashlib.sha256(b"sign:" + name.encode()).digest(),
        hashlib.sha256(b"agree:" + name.encode()).digest(),
    )


class SeededRandom:
    """A deterministic stand-in for os.urandom."""

    def __init__(self, label: str) -> None:
        self._label = label.encode()
        self._count = 0

    def __call__(self, size: int) -> bytes:
        self._count += 1
        out = hashlib.sha256(self._label + self._count.to_bytes(8, "big")).digest()
        while len(out) < size:
            out += hashlib.sha256(out).digest()
        return out[:size]


@dataclass
class World:
    net: MemoryNetwork
    broker: BrokerCore
    vendors: dict[str, VendorCore] = field(default_factory=dict)
    buyers: dict[str, BuyerCore] = field(default_factory=dict)
    now: float = T0
    keys: Callable[[str], AgentKeys] = seeded_identity

    def pump(self, advance: float = 0.0) -> int:
        self.now += advance
        return self.net.pump(self.now)

    def enroll_buyer(self, name: str, credit_limit: int = 1_000_000) -> BuyerCore:
        token = self.net.open_account(self.broker, name, "buyer", credit_limit, "EUR", self.now)
        buyer = BuyerCore(name, self.keys(name), self.broker.info, random=SeededRandom(name))
        self.net.attach(buyer, self.now)
        buyer.enroll(token, self.now)
        self.pump()
        assert any(isinstance(e, CertificateReceived) for e in self.net.events[name])
        self.buyers[name] = buyer
        return buyer

    def enroll_vendor(self, name: str, terms: VendorTerms | None = None) -> VendorCore:
        token = self.net.open_account(self.broker, name, "vendor", 0, "EUR", self.now)
        vendor = VendorCore(
            name,
            self.keys(name),
            self.broker.info,
            terms or default_terms(),
            random=SeededRandom(name),  # on-line scrip claims: the same bytes every run
        )
        self.net.attach(vendor, self.now)
        vendor.enroll(token, self.now)
        self.pump()
        assert vendor.certificate
        vendor.publish_offer(self.now)
        self.pump()
        self.vendors[name] = vendor
        return vendor


def default_terms() -> VendorTerms:
    return VendorTerms(
        unit_value=1,
        currency="EUR",
        max_length=100_000,
        max_jump=100,
        items=(OfferItem("article", 5), OfferItem("minute", 2)),
    )


def make_world(
    vendors: int = 1,
    buyers: int = 1,
    *,
    record: bool = False,
    policy: BrokerPolicy | None = None,
    keys: Callable[[str], AgentKeys] = seeded_identity,
) -> World:
    """A broker with its identity published, then ``vendor1``.. and ``buyer1``.. enrolled.

    ``keys`` gives each party its keys by name (seeded in-process keys unless a test or a
    benchmark puts them in a token).
    """
    broker = BrokerCore("broker", keys("broker"), policy=policy, random=SeededRandom("broker"))
    net = MemoryNetwork(record=record)
    world = World(net, broker, keys=keys)
    net.attach(broker, world.now)
    broker.publish_identity(world.now)
    world.pump()
    for index in range(vendors):
        world.enroll_vendor(f"vendor{index + 1}")
    for index in range(buyers):
        world.enroll_buyer(f"buyer{index + 1}")
    return world


def events_of(world: World, account: str, kind: type[E]) -> list[E]:
    """The events of one kind a core has reported so far."""
    return [event for event in world.net.events[account] if isinstance(event, kind)]
