"""A buyer or vendor starts only on its own store: one whose certificate names its keys.

Keys replaced under an enrolled data directory (or a store copied beside other keys) are
refused at start, in one line naming the directory, before anything is written.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agents.cli.main import main
from agents.daemons.broker_files import PUBLIC_FILE
from agents.daemons.buyer_agent import STORE_FILE as WALLET_FILE
from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.store_owner import ForeignStoreError
from agents.daemons.vendor_agent import STORE_FILE, VendorAgent
from agents.runtime.keystore import create_identity
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker
from tests.agents.harness import Harness


def swap_keys(directory: Path) -> None:
    """Put other keys in place of the directory's own, or the own ones back."""
    own, kept = directory / "agent.key", directory / "agent.key.own"
    if kept.exists():
        kept.replace(own)
    else:
        own.rename(kept)
        create_identity(own)


@pytest.mark.asyncio
async def test_buyer_and_vendor_refuse_a_store_whose_certificate_names_other_keys(
    tmp_path: Path, mosquitto: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await harness.start_broker()
    await harness.start_vendor("vendor1")
    await harness.enroll_buyer("buyer1")
    await harness.stop()
    assert harness.info is not None
    info = harness.info
    buyer_dir, vendor_dir = tmp_path / "buyer1", tmp_path / "vendor1"
    stores = [buyer_dir / WALLET_FILE, vendor_dir / STORE_FILE]
    before = [store.read_bytes() for store in stores]
    swap_keys(buyer_dir)
    swap_keys(vendor_dir)

    with pytest.raises(ForeignStoreError, match=f"^{buyer_dir} holds the store of other keys"):
        await BuyerAgent.open(buyer_dir, "buyer1", info, mosquitto.user("buyer1"))
    with pytest.raises(ForeignStoreError, match=f"^{vendor_dir} holds the store of other keys"):
        await VendorAgent.open(
            vendor_dir, "vendor1", info, VendorTerms(), mosquitto.user("vendor1")
        )
    assert [store.read_bytes() for store in stores] == before  # nothing written

    public = str(tmp_path / "broker" / PUBLIC_FILE)
    command = ["buyer", "balance", "--name", "buyer1", "--data-dir", str(buyer_dir)]
    assert await asyncio.to_thread(main, [*command, "--broker-pub", public]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"micropay: error: {buyer_dir} holds the store of other keys")
    assert line.endswith(
        "Start with the key store this directory was created with, or use another data directory."
    )

    swap_keys(buyer_dir)  # its own keys back: it starts as before
    swap_keys(vendor_dir)
    buyer = await BuyerAgent.open(buyer_dir, "buyer1", info, mosquitto.user("buyer1"))
    await buyer.store.close()
    assert buyer.core.certified is not None
    vendor = await VendorAgent.open(
        vendor_dir, "vendor1", info, VendorTerms(), mosquitto.user("vendor1")
    )
    await vendor.store.close()
    assert vendor.core.certified is not None
