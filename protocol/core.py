"""The one contract between a protocol core and whatever drives it.

An asyncio shell (``agents.runtime.loop``), the in-memory network of tests and benchmarks
(``protocol.memory``) and a device's own main loop all drive a core the same way: hand it
each message with the time, persist the events it returns, then publish what it queued;
ask when its timer is due, and run it then. ``E`` is the role's event union
(``BuyerEvent``, ``VendorEvent``, ``BrokerCoreEvent``), so a shell matches each event
type in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from protocol.events import HeldReply, Outgoing

E_co = TypeVar("E_co", covariant=True)


class Core(Protocol[E_co]):
    """What a shell needs of a protocol core; ``now`` is always the shell's clock."""

    account: str

    def subscriptions(self) -> list[str]:
        """Topic filters to read."""
        ...

    def receive(self, topic: str, payload: bytes, now: float) -> Sequence[E_co]:
        """Handle one message; never raises for anything the peer did."""
        ...

    def data_to_send(self) -> list[Outgoing]:
        """Drain the outbox: publish only after persisting the events returned so far."""
        ...

    def held_replies(self) -> list[HeldReply]:
        """Drain the replies that wait for the signed head of their commit."""
        ...

    def get_timer(self) -> float | None:
        """When ``handle_timer`` is next due (``None``: no timer armed)."""
        ...

    def handle_timer(self, now: float) -> Sequence[E_co]:
        """Run due timers; the events returned are persisted like ``receive``'s."""
        ...
