"""The ``scrip`` read model: one row per serial, folded from the scrip events.

``projections.fold`` hands the three scrip events here, so the projector and the audit
fold them the same way. A serial's deadline comes with its ``scrip-minted`` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol.broker_events import ScripDeposited, ScripMinted, ScripReturned

if TYPE_CHECKING:
    from broker_ledger.projections import ReadModels


@dataclass(slots=True)
class ScripRow:
    """What one serial was minted for, credited, and still holds.

    ``generation`` is the highest credited (``None`` before the first deposit),
    ``returned`` what went back to the buyer at the deadline, ``deadline`` in ms.
    """

    vendor: str
    buyer: str
    value: int
    generation: int | None
    credited: int
    outstanding: int
    returned: int
    deadline: int

    def as_tuple(self) -> tuple[str, str, int, int | None, int, int, int, int]:
        """The row's columns after the serial, as the table holds them."""
        return (
            self.vendor,
            self.buyer,
            self.value,
            self.generation,
            self.credited,
            self.outstanding,
            self.returned,
            self.deadline,
        )


def fold_scrip(models: ReadModels, event: ScripMinted | ScripDeposited | ScripReturned) -> None:
    """Apply one scrip event: the serial's row and the buyer's and vendor's balances."""
    match event:
        case ScripMinted():
            models.scrip[event.serial] = ScripRow(
                event.vendor,
                event.buyer,
                event.value,
                None,
                0,
                event.value,
                0,
                event.deadline,
            )
            models.balance(event.buyer).reserved += event.value
        case ScripDeposited():
            row = models.scrip[event.serial]
            row.generation = event.generation
            row.credited += event.credit
            row.outstanding = event.outstanding
            buyer = models.balance(event.buyer)
            buyer.debited += event.credit
            buyer.reserved -= event.credit
            models.balance(event.vendor).credited += event.credit
        case ScripReturned():
            row = models.scrip[event.serial]
            row.returned += event.amount
            row.outstanding -= event.amount
            models.balance(event.buyer).reserved -= event.amount
    models.dirty_scrip.add(event.serial)
