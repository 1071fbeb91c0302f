"""Chain seeds at rest: sealed to one key store, one account and one chain, in a real wallet file.

A wallet an earlier version wrote (seeds in plain text, some still in its write-ahead log
after a crash) is sealed in place the first time its owner opens it, and no plain seed is
left anywhere in its files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agents.daemons.store_schema import SCHEMA
from agents.daemons.wallet_store import StoredChannel, WalletStore
from agents.runtime.private_files import make_private_dir
from agents.runtime.sealing import SEALED_SIZE, SealError, SeedSealer
from protocol.crypto import Identity
from protocol.events import ChannelOpened

ALICE = Identity.generate()
CID = bytes(range(32))


def file_bytes(directory: Path) -> bytes:
    """Everything the wallet's files hold on disk: the database, its WAL and shared memory."""
    return b"".join(path.read_bytes() for path in sorted(directory.glob("wallet.db*")))


def test_a_sealed_seed_opens_only_for_its_keys_account_and_chain() -> None:
    seed = os.urandom(32)
    sealer = SeedSealer(ALICE, "alice")
    blob = sealer.seal(CID, seed)
    assert sealer.unseal(CID, blob) == seed
    # The format, computed independently: version, nonce, AES-256-GCM under the derived key.
    assert (len(blob), blob[0]) == (SEALED_SIZE, 0x01)
    key = ALICE.derive_secret(b"micropay/v1/seal-key\x00")
    aad = b"micropay/v1/sealed-seed\x00" + b"\x05alice" + CID
    assert AESGCM(key).decrypt(blob[1:13], blob[13:], aad) == seed
    assert sealer.seal(CID, seed) != blob  # a fresh nonce every time

    refused = [
        (SeedSealer(Identity.generate(), "alice"), CID, blob),  # other keys
        (SeedSealer(ALICE, "alicia"), CID, blob),  # moved to another account's wallet
        (sealer, bytes(32), blob),  # moved to another chain
        (sealer, CID, blob[:-1] + bytes([blob[-1] ^ 1])),  # altered
    ]
    for other, cid, sealed in refused:
        with pytest.raises(SealError, match=r"wallet\.db was sealed by other keys"):
            other.unseal(cid, sealed)
    with pytest.raises(SealError, match="no known format"):
        sealer.unseal(CID, seed)


@pytest.mark.asyncio
async def test_the_wallet_file_holds_sealed_seeds_only(tmp_path: Path) -> None:
    seed = os.urandom(32)
    store = await WalletStore.open(tmp_path / "wallet.db", sealer=SeedSealer(ALICE, "alice"))
    try:
        await store.record([ChannelOpened(CID, "kiosk", seed, b"signed", 1_000)])
        assert seed not in file_bytes(tmp_path)  # the WAL included, while the store is open
        (channel,) = await store.channels()
        assert channel.seed == seed
    finally:
        await store.close()
    assert seed not in file_bytes(tmp_path)

    stranger = await WalletStore.open(
        tmp_path / "wallet.db", sealer=SeedSealer(Identity.generate(), "alice")
    )
    try:
        with pytest.raises(SealError, match="without the key store it was created with"):
            await stranger.channels()
    finally:
        await stranger.close()


def write_old_wallet(directory: Path, channels: list[StoredChannel]) -> None:
    """A wallet as the previous version wrote it, left as a crash leaves it: part in the WAL."""
    make_private_dir(directory)
    with contextlib.closing(sqlite3.connect(directory / "wallet.db", isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        half = len(channels) // 2
        rows = [
            (c.commitment_id, c.vendor, c.seed, c.commitment, c.length, c.spent) for c in channels
        ]
        db.executemany("INSERT INTO channels VALUES (?, ?, ?, ?, ?, ?)", rows[:half])
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the first half in the database file
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.executemany("INSERT INTO channels VALUES (?, ?, ?, ?, ?, ?)", rows[half:])
        crashed = directory.parent / "crashed"  # copied before the close checkpoints the WAL
        shutil.copytree(directory, crashed)
    shutil.rmtree(directory)
    crashed.rename(directory)


@pytest.mark.asyncio
async def test_a_wallet_with_plain_seeds_is_sealed_in_place_when_its_owner_opens_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "alice"
    old = [
        StoredChannel(os.urandom(32), f"vendor{n % 3}", os.urandom(32), os.urandom(180), 100, n)
        for n in range(300)  # enough to span pages, so sealing moves rows between them
    ]
    write_old_wallet(directory, old)
    assert (directory / "wallet.db-wal").stat().st_size > 0
    assert all(channel.seed in file_bytes(directory) for channel in old)

    sealer = SeedSealer(ALICE, "alice")
    with caplog.at_level(logging.WARNING, "micropay.buyer"):
        store = await WalletStore.open(directory / "wallet.db", sealer=sealer)
    try:
        read_back = {channel.commitment_id: channel for channel in await store.channels()}
        assert read_back == {channel.commitment_id: channel for channel in old}
        on_disk = file_bytes(directory)  # while it is open: the crash's WAL is gone too
        assert [channel for channel in old if channel.seed in on_disk] == []
    finally:
        await store.close()
    sealed = (
        "wallet.db: sealed 300 chain seeds an earlier version kept in plain text"
        " (copies of the file made before now still hold them: destroy them)"
    )
    assert [r.getMessage() for r in caplog.records] == [sealed]
    on_disk = file_bytes(directory)
    assert [channel for channel in old if channel.seed in on_disk] == []
    with contextlib.closing(sqlite3.connect(directory / "wallet.db")) as db:
        sizes = db.execute("SELECT DISTINCT length(seed) FROM channels").fetchall()
    assert sizes == [(SEALED_SIZE,)]

    caplog.clear()
    with caplog.at_level(logging.WARNING, "micropay.buyer"):
        store = await WalletStore.open(directory / "wallet.db", sealer=sealer)
    try:
        assert len(await store.channels()) == len(old)
    finally:
        await store.close()
    assert caplog.records == []  # sealed once: nothing left to seal
