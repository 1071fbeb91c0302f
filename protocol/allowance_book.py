"""What the broker's books hold of daily allowances, folded from their ledger events.

Its own record, so the books fold allowance events with one line: the operator's setting
per buyer, each day's grant, and the reservations still to release at a day's end.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from protocol.allowance import day_end
from protocol.broker_events import AllowanceGranted, AllowanceReleased, AllowanceSet


@dataclass(slots=True)
class AllowanceBook:
    """Settings, grants by (buyer, day), and reservations waiting for their day to end."""

    settings: dict[str, int] = field(default_factory=dict)
    grants: dict[tuple[str, int], AllowanceGranted] = field(default_factory=dict)
    held: dict[tuple[str, int], int] = field(default_factory=dict)
    """Each grant's reservation not yet released."""
    due: list[tuple[float, str, int]] = field(default_factory=list)
    """(day end, buyer, day) of reservations to release: a heap."""
    held_by: dict[str, int] = field(default_factory=dict)
    """Per buyer: what its grants hold reserved now."""

    def apply(self, event: AllowanceSet | AllowanceGranted | AllowanceReleased) -> int:
        """Fold one event; returns how much it changes the buyer's ``reserved``."""
        match event:
            case AllowanceSet():
                self.settings[event.account] = event.amount
                return 0
            case AllowanceGranted():
                self.grants[event.buyer, event.day] = event
                if event.reserved:
                    self.held[event.buyer, event.day] = event.reserved
                    heapq.heappush(self.due, (day_end(event.day), event.buyer, event.day))
                self.held_by[event.buyer] = self.held_by.get(event.buyer, 0) + event.reserved
                return event.reserved
            case AllowanceReleased():
                self.held.pop((event.buyer, event.day), None)
                self.held_by[event.buyer] = self.held_by.get(event.buyer, 0) - event.amount
                return -event.amount

    def next_release(self) -> float | None:
        """When the earliest reservation still held is released."""
        due = self.due
        while due and (due[0][1], due[0][2]) not in self.held:
            heapq.heappop(due)  # released already
        return due[0][0] if due else None

    def releasable(self, now: float) -> list[tuple[str, int, int]]:
        """(buyer, day, amount) of every reservation whose day has ended by ``now``."""
        out = []
        for end, buyer, day in sorted(self.due):
            if end > now:
                break
            amount = self.held.get((buyer, day))
            if amount:
                out.append((buyer, day, amount))
        return out
