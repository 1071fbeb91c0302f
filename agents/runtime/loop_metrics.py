"""What every agent loop can tell Prometheus: its MQTT link, its traffic, its refusals.

Read from the counters the loop keeps anyway, at scrape time, so that the receive path
pays nothing for them. The store's commit latency is the one thing timed, once a batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agents.runtime.loop import AgentLoop, Persist
from protocol import topics

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds: an fsync'd SQLite commit takes about a millisecond; beyond a second is trouble."""


def peer_kind(topic: str, broker: str) -> str:
    """Who a published topic is for: ``broker``, ``peer`` (another agent) or ``broadcast``."""
    parts = topics.split(topic)
    if parts is None or parts[0] == "pub":
        return "broadcast"
    return "broker" if parts[1] == broker else "peer"


class LoopCollector(Collector):
    """``micropay_<role>_mqtt_*`` and ``micropay_<role>_rejected_total``, read on scrape."""

    def __init__(self, role: str, loop: AgentLoop[Any], broker: str) -> None:
        self.prefix = f"micropay_{role}"
        self.loop = loop
        self.broker = broker

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """Called by the scraping thread: copies first, the loop may be counting."""
        loop, prefix = self.loop, self.prefix
        yield GaugeMetricFamily(
            f"{prefix}_mqtt_connected",
            "1 while connected to Mosquitto",
            value=1.0 if loop.connected.is_set() else 0.0,
        )
        yield CounterMetricFamily(
            f"{prefix}_mqtt_messages_received",
            "MQTT messages received",
            value=loop.received,
        )
        sent = CounterMetricFamily(
            f"{prefix}_mqtt_messages_sent",
            "MQTT messages published, by whom they are for",
            labels=["to"],
        )
        by_kind = dict.fromkeys(("broker", "peer", "broadcast"), 0)
        for topic, count in list(loop.sent.items()):
            by_kind[peer_kind(topic, self.broker)] += count
        for kind, count in by_kind.items():
            sent.add_metric([kind], count)
        yield sent
        rejected = CounterMetricFamily(
            f"{prefix}_rejected",
            "Messages refused, by the protocol's error code",
            labels=["code"],
        )
        for code, count in sorted(loop.rejections.items()):
            rejected.add_metric([code], count)
        yield rejected


def timed(persist: Persist[Any], histogram: Histogram) -> Persist[Any]:
    """``persist`` that records how long each commit took."""

    async def run(events: list[Any]) -> None:
        started = time.perf_counter()
        await persist(events)
        histogram.observe(time.perf_counter() - started)

    return run


def register_loop(
    registry: CollectorRegistry, role: str, loop: AgentLoop[Any], broker: str
) -> None:
    """Add the loop's metrics to ``registry`` and time its store commits."""
    registry.register(LoopCollector(role, loop, broker))
    histogram = Histogram(
        f"micropay_{role}_store_commit_seconds",
        "Time to make one batch of events durable (before its replies are published)",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    loop.persist = timed(loop.persist, histogram)
