"""The vendor's store: its chains and totals, on top of the store both agents share."""

from __future__ import annotations

from dataclasses import dataclass

from agents.daemons.agent_store import AgentStore
from protocol.vendor_scrip import ScripRecord


@dataclass(frozen=True, slots=True)
class StoredChain:
    """A vendor's chain as kept in its store."""

    commitment_id: bytes
    buyer: str
    commitment: bytes
    index: int
    word: bytes
    redeemed: int


class VendorStore(AgentStore):
    """A vendor's store: the chains it accepted, to restore and to total."""

    async def chains(self) -> list[StoredChain]:
        """The vendor's chains."""
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT commitment_id, buyer, commitment, idx, word, redeemed FROM chains"
            ).fetchall()
        )
        return [StoredChain(bytes(r[0]), r[1], bytes(r[2]), r[3], bytes(r[4]), r[5]) for r in rows]

    async def allowance_counts(self, since_day: int) -> list[tuple[str, int, int]]:
        """(buyer, day, amount) each chain counted against a daily grant from ``since_day`` on."""
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT buyer, day, amount FROM allowance_chains WHERE day >= ? AND amount > 0",
                (since_day,),
            ).fetchall()
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def totals(self) -> tuple[int, int]:
        """(amount accepted, number of chains) for the vendor."""
        row = await self._run(
            lambda: self._db.execute(
                "SELECT COALESCE(SUM(amount), 0), COUNT(*) FROM chains"
            ).fetchone()
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def spent_scrip(self) -> list[ScripRecord]:
        """The spent set: per serial the latest generation accepted, as the core restores it."""
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT s.serial, s.generation, s.buyer, s.item, s.price, s.spent, s.change,"
                " s.expires, s.confirmed, COALESCE(r.reason, '') FROM spent_scrip s"
                " LEFT JOIN scrip_refused r"
                " ON r.serial = s.serial AND r.generation = s.generation"
            ).fetchall()
        )
        return [
            ScripRecord(
                r[0], r[1], r[2], r[3], r[4], bytes(r[5]), bytes(r[6]), r[7], r[8], refused=r[9]
            )
            for r in rows
        ]
