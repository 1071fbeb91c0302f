"""The vendor daemon's metrics: what it accepted, what it holds, what the broker credited.

Counters are plain integers bumped from the typed events the loop already hands to the
daemon; gauges are computed from the core's chains when Prometheus scrapes. The receive
path therefore pays one function call per event, and nothing per scrape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.daemons.vendor_agent import VendorAgent
from agents.runtime.loop_metrics import register_loop
from protocol.events import (
    CommitmentAccepted,
    PaymentAccepted,
    PeerError,
    RedemptionConfirmed,
    ScripAccepted,
    ScripDepositConfirmed,
    ScripDepositRefused,
    ScripRepeatAnswered,
    VendorEvent,
)
from protocol.vendor_chains import ChainState

React = Callable[[VendorEvent, float], None]


@dataclass
class VendorTally:
    """Counts since the daemon started, from its events."""

    payments: int = 0
    units: int = 0
    amount: int = 0
    commitments: int = 0
    redemptions_confirmed: int = 0
    scrip_payments: int = 0
    scrip_amount: int = 0
    scrip_deposits_confirmed: int = 0
    scrip_deposits_refused: int = 0
    scrip_repeats: int = 0
    peer_errors: Counter[str] = field(default_factory=Counter)

    def count(self, event: VendorEvent) -> None:
        """Add one event (the loop's ``react`` hook calls this for each)."""
        match event:
            case PaymentAccepted():
                self.payments += 1
                self.units += event.units
                self.amount += event.amount
            case CommitmentAccepted():
                self.commitments += 1
            case RedemptionConfirmed():
                self.redemptions_confirmed += 1
            case ScripAccepted():
                self.scrip_payments += 1
                self.scrip_amount += event.price
            case ScripDepositConfirmed():
                self.scrip_deposits_confirmed += 1
            case ScripDepositRefused():
                self.scrip_deposits_refused += 1
            case ScripRepeatAnswered():
                self.scrip_repeats += 1
            case PeerError():
                self.peer_errors[event.code] += 1
            case _:
                pass


class VendorCollector(Collector):
    """``micropay_vendor_*``: the tally's counters and the chains' gauges."""

    def __init__(self, agent: VendorAgent, tally: VendorTally) -> None:
        self.agent = agent
        self.tally = tally

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Runs in the scraping thread: reads copies of what the loop changes."""
        tally = self.tally
        for name, text, value in (
            ("payments", "Payments accepted (verified and stored)", tally.payments),
            ("units", "Units paid for in accepted payments", tally.units),
            ("amount", "Value accepted, in the currency's smallest unit", tally.amount),
            ("commitments_accepted", "Payword chains accepted", tally.commitments),
            (
                "redemptions_confirmed",
                "Redemptions the broker credited",
                tally.redemptions_confirmed,
            ),
            (
                "scrip_payments",
                "Scrip payments accepted (recorded in the spent set)",
                tally.scrip_payments,
            ),
            ("scrip_amount", "Value accepted in scrip, in the smallest unit", tally.scrip_amount),
            (
                "scrip_deposits_confirmed",
                "Scrip deposits the broker credited",
                tally.scrip_deposits_confirmed,
            ),
            (
                "scrip_deposits_refused",
                "Scrip deposits the broker refused for good (kept, not sent again)",
                tally.scrip_deposits_refused,
            ),
            (
                "scrip_repeats",
                "On-line scrip payments the broker had credited already: answered, not served",
                tally.scrip_repeats,
            ),
        ):
            yield CounterMetricFamily(f"micropay_vendor_{name}", text, value=value)
        errors = CounterMetricFamily(
            "micropay_vendor_peer_errors",
            "Refusals received from the broker (a redemption or registration), by code",
            labels=["code"],
        )
        for code, count in sorted(tally.peer_errors.items()):
            errors.add_metric([code], count)
        yield errors
        yield from self._chains()

    def _chains(self) -> Iterator[GaugeMetricFamily]:
        chains = list(self.agent.core.chains.values())
        by_state = GaugeMetricFamily(
            "micropay_vendor_chains", "Payword chains held, by redemption state", labels=["state"]
        )
        counts = Counter(chain.state for chain in chains)
        for state in ChainState:
            by_state.add_metric([state.value], counts[state])
        yield by_state
        held = [(max(c.index - c.redeemed, 0), c.verified.commitment.unit_value) for c in chains]
        yield GaugeMetricFamily(
            "micropay_vendor_units_unredeemed",
            "Units held in paywords the broker has not credited yet",
            value=sum(units for units, _ in held),
        )
        yield GaugeMetricFamily(
            "micropay_vendor_amount_unredeemed",
            "Value held in paywords the broker has not credited yet",
            value=sum(units * value for units, value in held),
        )
        yield GaugeMetricFamily(
            "micropay_vendor_scrip_awaiting_deposit",
            "Scrip serials whose latest payment the broker has not credited yet",
            value=sum(1 for r in list(self.agent.core.spent_scrip.values()) if r.owes_deposit),
        )


def vendor_metrics(agent: VendorAgent, registry: CollectorRegistry) -> None:
    """Add to ``registry`` this vendor's metrics; hooks the tally into the agent's loop."""
    tally = VendorTally()
    inner = agent.loop.react

    def react(event: VendorEvent, now: float) -> None:
        tally.count(event)
        if inner is not None:
            inner(event, now)

    agent.loop.react = react
    registry.register(VendorCollector(agent, tally))
    register_loop(registry, "vendor", agent.loop, agent.core.broker.id)
