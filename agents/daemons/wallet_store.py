"""The buyer's wallet: its channels, on top of the store both agents share."""

from __future__ import annotations

from dataclasses import dataclass

from agents.daemons.agent_store import AgentStore


@dataclass(frozen=True, slots=True)
class StoredChannel:
    """A buyer's channel as kept in the wallet."""

    commitment_id: bytes
    vendor: str
    seed: bytes
    commitment: bytes
    length: int
    spent: int


class WalletStore(AgentStore):
    """A buyer's store: what it needs to resume its channels."""

    async def channels(self) -> list[StoredChannel]:
        """The wallet's channels."""
        rows = await self._run(lambda: self._db.execute("SELECT * FROM channels").fetchall())
        return [
            StoredChannel(bytes(r[0]), r[1], bytes(r[2]), bytes(r[3]), r[4], r[5]) for r in rows
        ]
