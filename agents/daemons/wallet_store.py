"""The buyer's wallet: its channels, on top of the store both agents share.

Seeds are kept sealed (``agents/runtime/sealing.py``) and unsealed as they are read. A
wallet an earlier version wrote holds them in plain text: they are sealed in place the
first time its owner opens it, with SQLite's secure delete on, so the plain bytes leave
the file's pages and its write-ahead log as well.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from agents.daemons.agent_store import AgentStore
from agents.runtime.sealing import SEED_SIZE, SeedSealer, scrip_label, secret_label
from protocol.codec import decode_scrip, decode_tagged_scrip
from protocol.crypto import AgentKeys
from protocol.scrip import PERIOD_MS, key_ref

log = logging.getLogger("micropay.buyer")

MINT_ORDER_KEPT = 2 * PERIOD_MS
"""How long an unanswered mint order is asked again (ms): longer than any scrip lives."""


@dataclass(frozen=True, slots=True)
class StoredChannel:
    """A buyer's channel as kept in the wallet; ``spent`` is its spend reservation."""

    commitment_id: bytes
    vendor: str
    seed: bytes
    commitment: bytes
    length: int
    spent: int


@dataclass(frozen=True, slots=True)
class StoredScrip:
    """Scrip in the wallet, unsealed, with the customer secret of its vendor and ``ref``."""

    serial: int
    vendor: str
    scrip: bytes
    secret: bytes


@dataclass(frozen=True, slots=True)
class ScripHolding:
    """What the wallet holds at one vendor, from the plain columns (nothing unsealed)."""

    vendor: str
    pieces: int
    value: int
    expires: int


class WalletStore(AgentStore):
    """A buyer's store: what it needs to resume its channels."""

    def _prepare(self, owner: AgentKeys | None, directory: Path) -> None:
        """Refuse another's wallet, then seal the seeds an earlier version left in plain text."""
        self._db.execute("PRAGMA secure_delete = ON")  # a moved row leaves zeros behind
        super()._prepare(owner, directory)
        if self._sealer is not None:
            self._seal_plain_seeds(self._sealer)

    def _seal_plain_seeds(self, sealer: SeedSealer) -> None:
        """Seal every 32-byte (plain) seed in one transaction, then empty the WAL."""
        find = "SELECT commitment_id, seed FROM channels WHERE length(seed) = ?"
        self._db.execute("BEGIN IMMEDIATE")
        try:
            plain = self._db.execute(find, (SEED_SIZE,)).fetchall()
            self._db.executemany(
                "UPDATE channels SET seed = ? WHERE commitment_id = ?",
                [(sealer.seal(bytes(cid), bytes(seed)), cid) for cid, seed in plain],
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        if plain:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            log.warning(
                "wallet.db: sealed %d chain seeds an earlier version kept in plain text"
                " (copies of the file made before now still hold them: destroy them)",
                len(plain),
            )

    async def channels(self) -> list[StoredChannel]:
        """The wallet's channels, their seeds unsealed (``SealError`` if they are not ours)."""
        sealer = self._sealer
        if sealer is None:
            msg = "a wallet opened without its sealer cannot read its seeds"
            raise TypeError(msg)

        def read() -> list[StoredChannel]:
            rows = self._db.execute("SELECT * FROM channels").fetchall()
            return [
                StoredChannel(
                    bytes(r[0]),
                    r[1],
                    sealer.unseal(bytes(r[0]), bytes(r[2])),
                    bytes(r[3]),
                    r[4],
                    r[5],
                )
                for r in rows
            ]

        return await self._run(read)

    async def scrip(self) -> tuple[list[StoredScrip], list[tuple[int, str, int]]]:
        """The scrip held, unsealed, and the pending payments as ``(serial, item, price)``."""
        sealer = self._sealer
        if sealer is None:
            msg = "a wallet opened without its sealer cannot read its scrip"
            raise TypeError(msg)

        def read() -> tuple[list[StoredScrip], list[tuple[int, str, int]]]:
            secrets = {
                (r[0], bytes(r[1])): sealer.unseal_scrip(
                    secret_label(r[0], bytes(r[1])), bytes(r[2])
                )
                for r in self._db.execute("SELECT vendor, ref, sealed FROM scrip_secrets")
            }
            held = []
            for serial, vendor, sealed in self._db.execute(
                "SELECT serial, vendor, sealed FROM scrip"
            ).fetchall():
                tagged = sealer.unseal_scrip(scrip_label(serial), bytes(sealed))
                ref = _ref_of(tagged)
                held.append(StoredScrip(serial, vendor, tagged, secrets[vendor, ref]))
            pending = self._db.execute(
                "SELECT p.serial, p.item, p.price FROM scrip_pending p"
                " JOIN scrip s ON s.serial = p.serial AND s.generation = p.generation"
            ).fetchall()
            return held, [(int(r[0]), str(r[1]), int(r[2])) for r in pending]

        return await self._run(read)

    async def mint_orders(self, now_ms: int) -> list[tuple[bytes, str, int]]:
        """The ``scrip?`` orders the broker has not answered, as ``(request, vendor, value)``.

        An order older than ``MINT_ORDER_KEPT`` is dropped first: whatever scrip answered
        it has expired (the broker returned its value), so asking again gains nothing.
        """

        def read() -> list[tuple[bytes, str, int]]:
            with self._db:
                self._db.execute(
                    "DELETE FROM scrip_orders WHERE at < ?", (now_ms - MINT_ORDER_KEPT,)
                )
            rows = self._db.execute(
                "SELECT request, vendor, value FROM scrip_orders ORDER BY at"
            ).fetchall()
            return [(bytes(r[0]), str(r[1]), int(r[2])) for r in rows]

        return await self._run(read)

    async def scrip_held(self, now_ms: int) -> list[ScripHolding]:
        """Per vendor, the unexpired scrip held: how many pieces, their value, the first expiry."""
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT vendor, COUNT(*), SUM(value), MIN(expires) FROM scrip"
                " WHERE expires >= ? GROUP BY vendor ORDER BY vendor",
                (now_ms,),
            ).fetchall()
        )
        return [ScripHolding(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]


def _ref_of(tagged: bytes) -> bytes:
    """The ``ref`` naming the customer secret of a scrip: its certificate and period."""
    scrip = decode_scrip(decode_tagged_scrip(tagged).body)
    return key_ref(scrip.vendor_serial, scrip.period)


def spent_on_disk(path: Path) -> dict[bytes, int]:
    """Each channel's spent index as the wallet file holds it (read-only, after a stop).

    The file, not the core's memory, says what was paid: a payword is published only
    after a reservation covering it commits, a commit may complete as its task is
    interrupted, and a session that ends hands back what it reserved and did not pay.
    """
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT commitment_id, spent FROM channels").fetchall()
    return {bytes(cid): int(spent) for cid, spent in rows}
