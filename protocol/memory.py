"""An in-memory MQTT stand-in that wires cores together, for tests, benchmarks and the demo.

It routes each core's ``data_to_send()`` by topic exactly as the topic scheme and ACLs
would on Mosquitto (inbox topics to their recipient, retained broadcasts to everybody,
including cores attached later), so flows run end to end without a network.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from protocol import topics
from protocol.broker import BrokerCore
from protocol.broker_events import BROKER_EVENT_TYPES, AnyBrokerEvent
from protocol.core import Core
from protocol.events import Outgoing
from protocol.messages import Role


class MemoryNetwork:
    """Delivers every queued message until all cores are quiet."""

    def __init__(self, *, record: bool = False) -> None:
        self.record = record
        self.log: list[tuple[str, str, bytes]] = []
        self.cores: dict[str, Core[object]] = {}
        self.retained: dict[str, bytes] = {}
        self.events: dict[str, list[object]] = defaultdict(list)
        self.delivered = 0
        self.dropped: list[Outgoing] = []
        self._persisted: dict[str, int] = defaultdict(int)

    def attach(self, core: Core[object], now: float) -> None:
        """Add a core; it receives every retained message, as a new subscriber would."""
        self.cores[core.account] = core
        for topic, payload in list(self.retained.items()):
            if _subscribed(core, topic):
                self._deliver(core, topic, payload, now)

    def open_account(  # noqa: PLR0913 - the operator's request, and where it is made
        self,
        broker: BrokerCore,
        account: str,
        role: Role,
        credit_limit: int,
        currency: str,
        now: float,
    ) -> bytes:
        """Open an account as the broker's operator does; returns its enrollment token."""
        self.events[broker.account].append(
            broker.open_account(account, role, credit_limit, currency, now)
        )
        return broker.enrollment_token(account)

    def ledger_events(self, account: str) -> list[AnyBrokerEvent]:
        """The broker events ``account`` decided since the last call: what its shell persists."""
        events = self.events[account]
        start = self._persisted[account] if self._persisted[account] <= len(events) else 0
        self._persisted[account] = len(events)
        return [event for event in events[start:] if isinstance(event, BROKER_EVENT_TYPES)]

    def pump(self, now: float, max_rounds: int = 1000) -> int:
        """Deliver until no core has anything left to send; returns messages delivered."""
        delivered = 0
        for _ in range(max_rounds):
            batch = [
                (core, out) for core in list(self.cores.values()) for out in core.data_to_send()
            ]
            if not batch:
                return delivered
            for sender, out in batch:
                delivered += self._route(sender, out, now)
        raise RuntimeError("network did not settle")

    def _route(self, sender: Core[object], out: Outgoing, now: float) -> int:
        parts = topics.split(out.topic)
        if parts is None:
            self.dropped.append(out)
            return 0
        kind, first, _ = parts
        if kind == "in":
            target = self.cores.get(first)
            if target is None or not _subscribed(target, out.topic):
                self.dropped.append(out)
                return 0
            self._deliver(target, out.topic, out.payload, now)
            return 1
        if out.retain:
            self.retained[out.topic] = out.payload
        count = 0
        for core in list(self.cores.values()):
            if core is not sender and _subscribed(core, out.topic):
                self._deliver(core, out.topic, out.payload, now)
                count += 1
        return count

    def _deliver(self, core: Core[object], topic: str, payload: bytes, now: float) -> None:
        self.delivered += 1
        if self.record:
            self.log.append((core.account, topic, payload))
        self.events[core.account].extend(core.receive(topic, payload, now))

    def inject(self, recipient: str, topic: str, payload: bytes, now: float) -> Sequence[object]:
        """Hand raw bytes to one core, as an attacker on the broker could."""
        events = self.cores[recipient].receive(topic, payload, now)
        self.events[recipient].extend(events)
        return events


def _subscribed(core: Core[object], topic: str) -> bool:
    return any(topics.matches(pattern, topic) for pattern in core.subscriptions())
