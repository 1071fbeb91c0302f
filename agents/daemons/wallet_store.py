"""The buyer's wallet: its channels, on top of the store both agents share."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from agents.daemons.agent_store import AgentStore


@dataclass(frozen=True, slots=True)
class StoredChannel:
    """A buyer's channel as kept in the wallet; ``spent`` is its spend reservation."""

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


def spent_on_disk(path: Path) -> dict[bytes, int]:
    """Each channel's spent index as the wallet file holds it (read-only, after a stop).

    The file, not the core's memory, says what was paid: a payword is published only
    after a reservation covering it commits, a commit may complete as its task is
    interrupted, and a session that ends hands back what it reserved and did not pay.
    """
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT commitment_id, spent FROM channels").fetchall()
    return {bytes(cid): int(spent) for cid, spent in rows}
