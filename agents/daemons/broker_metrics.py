"""The broker daemon's metrics: enrollments, commitments, redemptions, the ledger's progress.

Counted from the ledger events as they are appended (MQTT decisions and operator actions
alike, through ``BrokerService.on_stored``), so each number agrees with the ledger the
audit reads. The ledger head and the published head are read when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.daemons.broker_daemon import BrokerDaemon
from agents.runtime.loop_metrics import LATENCY_BUCKETS, register_loop
from protocol.broker_events import (
    AccountOpened,
    AnyBrokerEvent,
    CertificateIssued,
    CertificateRevoked,
    CommitmentRegistered,
    CreditLimitExceeded,
    PaywordsRedeemed,
    RedemptionRejected,
    RegistrationRefused,
)

EVENTS_PER_APPEND_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class BrokerTally:
    """Counts since the daemon started, from the ledger events it appended."""

    accounts_opened: int = 0
    enrollments: int = 0
    commitments_registered: int = 0
    commitments_refused: int = 0
    redemptions: int = 0
    redemptions_refused: int = 0
    units_credited: int = 0
    amount_credited: int = 0
    credit_limit_exceeded: int = 0
    revocations: int = 0

    def count(self, event: AnyBrokerEvent) -> None:
        """Add one appended event."""
        match event:
            case PaywordsRedeemed():
                self.redemptions += 1
                self.units_credited += event.units
                self.amount_credited += event.amount
            case CommitmentRegistered():
                self.commitments_registered += 1
            case RegistrationRefused():
                self.commitments_refused += 1
            case RedemptionRejected():
                self.redemptions_refused += 1
            case CreditLimitExceeded():
                self.credit_limit_exceeded += 1
            case CertificateIssued():
                self.enrollments += 1
            case CertificateRevoked():
                self.revocations += 1
            case AccountOpened():
                self.accounts_opened += 1
            case _:
                pass


HELP = {
    "accounts_opened": "Accounts opened by the operator",
    "enrollments": "Certificates issued (enrollments)",
    "commitments_registered": "Payword chains registered (credit reserved)",
    "commitments_refused": "Payword chains refused at registration",
    "redemptions": "Redemptions credited to vendors",
    "redemptions_refused": "Redemptions refused (recorded as evidence)",
    "units_credited": "Units credited to vendors by redemptions",
    "amount_credited": "Value credited to vendors, in the currency's smallest unit",
    "credit_limit_exceeded": "Times a buyer's exposure passed its credit limit",
    "revocations": "Certificates revoked",
}


class BrokerCollector(Collector):
    """``micropay_broker_*``: the tally's counters and the ledger's heads."""

    def __init__(self, daemon: BrokerDaemon, tally: BrokerTally) -> None:
        self.daemon = daemon
        self.tally = tally

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Runs in the scraping thread; plain reads of integers."""
        for name, text in HELP.items():
            value = getattr(self.tally, name)
            yield CounterMetricFamily(f"micropay_broker_{name}", text, value=value)
        seq, _ = self.daemon.service.store.durable_head
        yield GaugeMetricFamily(
            "micropay_broker_ledger_head_seq", "Sequence number of the durable ledger head", seq
        )
        yield GaugeMetricFamily(
            "micropay_broker_ledger_head_published_seq",
            "Sequence number of the last signed head published to the agents (-1: none yet)",
            self.daemon.witnessed,
        )
        projected = self.daemon.service.projected
        if projected is not None:
            yield GaugeMetricFamily(
                "micropay_broker_projector_lag_events",
                "Ledger events not yet folded into the read models (head seq - projected seq)",
                seq - projected,
            )
        published_at = self.daemon.published_at
        if published_at is not None:
            yield GaugeMetricFamily(
                "micropay_broker_ledger_head_published_age_seconds",
                "Seconds since the broker last published a signed ledger head (a head is"
                " published when it moved, and on every connection)",
                time.monotonic() - published_at,
            )


def broker_metrics(daemon: BrokerDaemon, registry: CollectorRegistry) -> None:
    """Add to ``registry`` this broker's metrics; hooks the tally into its ledger appends."""
    tally = BrokerTally()
    append_seconds = Histogram(
        "micropay_broker_ledger_append_seconds",
        "Time to append (and durably commit) one batch of ledger events",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    events_per_append = Histogram(
        "micropay_broker_ledger_events_per_append",
        "Ledger events in one append (group commit)",
        buckets=EVENTS_PER_APPEND_BUCKETS,
        registry=registry,
    )

    def stored(events: Sequence[AnyBrokerEvent], seconds: float) -> None:
        for event in events:
            tally.count(event)
        append_seconds.observe(seconds)
        events_per_append.observe(len(events))

    daemon.service.on_stored = stored
    registry.register(BrokerCollector(daemon, tally))
    register_loop(registry, "broker", daemon.loop, daemon.service.core.account)
