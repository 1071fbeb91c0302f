"""The wallet keeps one number per chain, its spend reservation, and writes it only when it moves.

A payment within the reservation costs no transaction; one past it raises the stored value,
never lowers it; a session's hand-back sets it, in the order of the batch's events.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.daemons.wallet_store import WalletStore, spent_on_disk
from agents.runtime.sealing import SeedSealer
from protocol.crypto import Identity
from protocol.events import ChannelOpened, PaywordSpent, SpendReserved

CID = bytes(32)


async def stored(store: WalletStore) -> int:
    (channel,) = await store.channels()
    return channel.spent


@pytest.mark.asyncio
async def test_the_wallet_writes_a_reservation_only_when_it_moves(tmp_path: Path) -> None:
    sealer = SeedSealer(Identity.generate(), "alice")
    store = await WalletStore.open(tmp_path / "wallet.db", sealer=sealer)
    try:
        await store.record([ChannelOpened(CID, "kiosk", bytes(32), b"signed", 1_000)])
        await store.record([PaywordSpent(CID, 5, 64)])
        assert await stored(store) == 64
        before = store.transactions
        await store.record([PaywordSpent(CID, index, None) for index in range(6, 64)])
        assert store.transactions == before  # within the reservation: nothing to write
        await store.record([PaywordSpent(CID, 60, 60)])  # only a hand-back lowers it
        assert await stored(store) == 64
        await store.record([SpendReserved(CID, 10)])  # a session hands back what it kept
        assert await stored(store) == 10
        # In one batch, each chain's last word counts: a hand-back, then a new reservation
        await store.record([SpendReserved(CID, 12), PaywordSpent(CID, 13, 77)])
        assert await stored(store) == 77
        # ... or a reservation, then the session's hand-back below it.
        await store.record([PaywordSpent(CID, 80, 141), SpendReserved(CID, 80)])
        assert await stored(store) == 80
    finally:
        await store.close()
    assert spent_on_disk(tmp_path / "wallet.db") == {CID: 80}
