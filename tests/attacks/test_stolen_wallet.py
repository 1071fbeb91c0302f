"""A thief with a copy of a wallet or a vendor store, and keys of its own: nothing to take.

The thief holds the copied file and, like the vendor, the signed commitment (its root and
length). A wallet's seeds are sealed under its owner's key store, so the copy neither
opens beside other keys nor holds a single payword: no 32-byte window of it hashes down
the chain to the root. A vendor's store holds the paywords it was paid, but redeeming
them takes the vendor's pair key with the broker, which the copy does not hold.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from agents.daemons.buyer_agent import STORE_FILE as WALLET_FILE
from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.store_owner import ForeignStoreError
from agents.daemons.vendor_agent import STORE_FILE, VendorAgent
from agents.runtime.keystore import create_identity, load_identity
from agents.runtime.private_files import make_private_dir
from agents.runtime.sealing import SealError
from protocol.chain import walk
from protocol.vendor import VendorCore, VendorTerms
from tests.agents.harness import wait_until
from tests.attacks.rogue import AttackHarness, halt_vendor, queue_redeem, rogue

LENGTH = 10  # the chain's length: the thief's search below costs LENGTH² hashes per window
UNITS = 6  # paid before the theft: paywords 1..6 are the vendor's, 7..10 nobody's yet


def steal(source: Path, store: str, thief: Path) -> Path:
    """Copy a store's files (WAL included) into a fresh data directory with other keys."""
    make_private_dir(thief)
    for path in source.glob(f"{store}*"):
        shutil.copy2(path, thief / path.name)
    create_identity(thief / "agent.key")
    return thief


def file_bytes(directory: Path, store: str) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.glob(f"{store}*")))


def paywords_in(data: bytes, root: bytes, length: int) -> set[int]:
    """Every index ``k`` for which some 32-byte window of ``data`` is ``w_k``.

    The thief's whole search: a window is ``w_k`` exactly when it hashes down to the
    committed root in ``k`` position-bound steps.
    """
    windows = {data[start : start + 32] for start in range(len(data) - 31)}
    return {k for word in windows for k in range(1, length + 1) if walk(word, k, k) == root}


async def pay(harness: AttackHarness) -> None:
    """An honest buyer, enrolled here, pays vendor1 ``UNITS`` units on a fresh chain."""
    await harness.enroll_buyer("buyer1")
    buyer = await harness.buyer("buyer1")
    result = await buyer.run(lambda: buyer.pay("vendor1", UNITS // 2, 2, length=LENGTH))
    assert result.acknowledged == UNITS


@pytest.mark.asyncio
async def test_a_copied_wallet_does_not_open_beside_other_keys_and_holds_no_payword(
    harness: AttackHarness,
) -> None:
    vendor = await harness.start_vendor("vendor1")
    await pay(harness)
    (chain,) = vendor.core.chains.values()
    root = chain.verified.commitment.root  # what the vendor (or a thief) knows of the chain
    assert (chain.verified.commitment.length, chain.index) == (LENGTH, UNITS)
    assert harness.info is not None
    info, mqtt = harness.info, harness.mosquitto.user("buyer1")

    thief = steal(harness.root / "buyer1", WALLET_FILE, harness.root / "thief")
    stolen = file_bytes(thief, WALLET_FILE)
    refusal = f"^{re.escape(str(thief))} holds the store of other keys"
    with pytest.raises(ForeignStoreError, match=refusal):
        await BuyerAgent.open(thief, "buyer1", info, mqtt)
    # Without the certificate that names the owner's keys, the seeds still do not open.
    with contextlib.closing(sqlite3.connect(thief / WALLET_FILE)) as db, db:
        db.execute("DELETE FROM meta WHERE key = 'certificate'")
    with pytest.raises(SealError, match="without the key store it was created with"):
        await BuyerAgent.open(thief, "buyer1", info, mqtt)

    # No window of the copy is a payword (the seed, w_10, included) ...
    assert paywords_in(stolen, root, LENGTH) == set()
    # ... while the same search finds, in the vendor's store, exactly what it was paid.
    held = paywords_in(file_bytes(harness.root / "vendor1", STORE_FILE), root, LENGTH)
    assert max(held) == UNITS

    buyer = await harness.buyer("buyer1")  # the owner's wallet pays on, on the same chain
    result = await buyer.run(lambda: buyer.pay("vendor1", 1, 2))
    assert result.acknowledged == UNITS + 2
    assert vendor.core.chains[chain.verified.id].index == UNITS + 2


@pytest.mark.asyncio
async def test_a_copied_vendor_store_beside_other_keys_redeems_nothing(
    harness: AttackHarness,
) -> None:
    vendor = await harness.start_vendor("vendor1")
    await pay(harness)
    paid = UNITS * vendor.core.terms.unit_value
    halted = await halt_vendor(harness, "vendor1")  # stopped before redeeming: all unredeemed
    assert halted.core.unredeemed_amount == paid
    assert harness.info is not None
    info, mqtt = harness.info, harness.mosquitto.user("vendor1")

    thief = steal(harness.root / "vendor1", STORE_FILE, harness.root / "thief")
    refusal = f"^{re.escape(str(thief))} holds the store of other keys"
    with pytest.raises(ForeignStoreError, match=refusal):
        await VendorAgent.open(thief, "vendor1", info, VendorTerms(), mqtt)

    # By hand, then: every chain in the copy redeemed as vendor1, under the thief's pair key.
    with contextlib.closing(sqlite3.connect(thief / STORE_FILE)) as db:
        claims = db.execute("SELECT commitment, idx, word FROM chains").fetchall()
    assert [index for _, index, _ in claims] == [UNITS]
    forger = VendorCore("vendor1", load_identity(thief / "agent.key"), info, VendorTerms())
    for commitment, index, word in claims:
        queue_redeem(forger, commitment, index, word)
    broker = harness.daemon
    assert broker is not None
    refused = broker.loop.rejections["auth"]
    async with rogue(harness.mosquitto, "vendor1", forger) as attacker:
        await attacker.flush()
        await wait_until(lambda: broker.loop.rejections["auth"] == refused + len(claims))
    assert harness.credited("vendor1") == 0
    assert harness.debited("buyer1") == 0

    await harness.reopen_vendor("vendor1", halted.core.terms)  # the owner redeems its own
    await harness.redeem("vendor1")
    assert harness.credited("vendor1") == paid
    assert harness.debited("buyer1") == paid
