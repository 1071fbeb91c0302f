"""The buyer's metrics while ``buyer pay`` runs: what it paid, how fast receipts come back.

Counters are bumped from the typed events the wallet stores (``PaywordSpent``,
``ChannelOpened``) and receives (``ReceiptReceived``); the gauges are computed from the
core's chains and the certificate when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.daemons.buyer_agent import BuyerAgent
from agents.runtime.loop_metrics import register_loop
from protocol.buyer import BuyerCore
from protocol.events import BuyerEvent, ChannelOpened, OfferReceived, PaywordSpent, ReceiptReceived

RECEIPT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds from storing a payment to the vendor's receipt: a round trip through Mosquitto."""
PENDING_PER_CHAIN: Final = 1024
"""Payments awaiting a receipt remembered per chain; older ones are forgotten (not timed)."""


@dataclass
class BuyerTally:
    """Counts since the command started, and when each unacknowledged payment was stored."""

    latency: Histogram
    payments: int = 0
    units: int = 0
    amount: int = 0
    spent: dict[bytes, int] = field(default_factory=dict)
    pending: dict[bytes, dict[int, float]] = field(default_factory=dict)

    def know(self, core: BuyerCore) -> None:
        """Note how far each chain the core holds was spent before this command paid on it."""
        for cid, channel in list(core.channels.items()):
            self.spent.setdefault(cid, channel.spent)

    def paid(self, core: BuyerCore, event: PaywordSpent, at: float) -> None:
        """One payment, stored at ``at`` (monotonic seconds), about to be published."""
        channel = core.channels[event.commitment_id]
        before = self.spent.get(event.commitment_id, event.index)
        self.spent[event.commitment_id] = event.index
        self.payments += 1
        self.units += event.index - before
        self.amount += (event.index - before) * channel.unit_value
        pending = self.pending.setdefault(event.commitment_id, {})
        pending[event.index] = at
        if len(pending) > PENDING_PER_CHAIN:
            del pending[next(iter(pending))]

    def acknowledged(self, event: ReceiptReceived, at: float) -> None:
        """A receipt: each payment it covers for the first time took ``at`` minus its time."""
        pending = self.pending.get(event.commitment_id, {})
        for index in [index for index in pending if index <= event.index]:
            self.latency.observe(at - pending.pop(index))


class BuyerCollector(Collector):
    """``micropay_buyer_*``: the tally's counters, the chains and the credit left."""

    def __init__(self, agent: BuyerAgent, tally: BuyerTally, paid_before: int) -> None:
        self.agent = agent
        self.tally = tally
        self.paid_before = paid_before

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Runs in the scraping thread: reads copies of what the loop changes."""
        tally, core = self.tally, self.agent.core
        for name, text, value in (
            ("payments", "Payments made (stored, then published)", tally.payments),
            ("units", "Units paid in those payments", tally.units),
            ("amount", "Value paid, in the currency's smallest unit", tally.amount),
        ):
            yield CounterMetricFamily(f"micropay_buyer_{name}", text, value=value)
        now = self.agent.loop.clock()
        chains = list(core.channels.values())
        yield GaugeMetricFamily(
            "micropay_buyer_chains_open",
            "Payword chains loaded with units left and not expired",
            value=sum(1 for chain in chains if chain.remaining > 0 and chain.payable(0, now)),
        )
        certified = core.certified
        if certified is not None:
            yield GaugeMetricFamily(
                "micropay_buyer_credit_remaining",
                "The certificate's credit limit minus what this wallet has paid in all",
                value=certified.credit_limit - self.paid_before - tally.amount,
            )


async def buyer_metrics(agent: BuyerAgent, registry: CollectorRegistry) -> None:
    """Add to ``registry`` this buyer's metrics; hooks the tally into the agent's loop."""
    latency = Histogram(
        "micropay_buyer_receipt_latency_seconds",
        "Time from storing a payment (it is published next) to the receipt covering it",
        buckets=RECEIPT_BUCKETS,
        registry=registry,
    )
    tally = BuyerTally(latency)
    tally.know(agent.core)
    inner_react, inner_persist = agent.loop.react, agent.loop.persist

    def react(event: BuyerEvent, now: float) -> None:
        if isinstance(event, ReceiptReceived):
            tally.acknowledged(event, time.monotonic())
        if inner_react is not None:
            inner_react(event, now)
        if isinstance(event, OfferReceived):  # the wallet's chains to it are loaded now
            tally.know(agent.core)

    async def persist(events: list[Any]) -> None:
        at = time.monotonic()
        for event in events:
            if isinstance(event, ChannelOpened):
                tally.spent[event.commitment_id] = 0
            elif isinstance(event, PaywordSpent):
                tally.paid(agent.core, event, at)
        await inner_persist(events)

    agent.loop.react = react
    agent.loop.persist = persist
    registry.register(BuyerCollector(agent, tally, await agent.paid()))
    register_loop(registry, "buyer", agent.loop, agent.core.broker.id)
