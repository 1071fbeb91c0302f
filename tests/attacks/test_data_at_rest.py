"""Another local user against the files agents keep: wallets, stores, the ledger, logs, keys.

The data directories here live under a directory every local user may enter (as
``/var/lib`` or a home directory often is), and the process runs with the usual umask
022, so nothing but the agents' own modes keeps a neighbour out. The neighbour is a real
other user (``nobody``, through ``setpriv``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from agents.cli.main import main
from agents.daemons.broker_service import BrokerService
from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.vendor_agent import VendorAgent
from agents.ops.mosquitto import render
from agents.runtime.private_files import PermissionsError
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker
from tests.attacks.rogue import AttackHarness, paid

NOBODY = 65534


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A directory any local user may enter, and the umask most shells start with."""
    root = Path(tempfile.mkdtemp(prefix="micropay-at-rest-"))
    root.chmod(0o755)  # the operator's choice of parent, not ours
    previous = os.umask(0o022)
    try:
        yield root
    finally:
        os.umask(previous)
        shutil.rmtree(root)


@pytest_asyncio.fixture
async def agents(shared_root: Path, mosquitto: Broker) -> AsyncIterator[AttackHarness]:
    """A broker, a vendor and a buyer who paid, all keeping their files in ``shared_root``."""
    harness = AttackHarness(shared_root, mosquitto)
    await harness.start_broker()
    await harness.start_vendor("vendor1", VendorTerms(redeem_interval=0.2))
    try:
        await paid(harness, 7)
        await harness.redeem("vendor1")
        yield harness
    finally:
        await harness.stop()


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    """Run a command as another local user, with no supplementary groups."""
    return subprocess.run(  # noqa: S603 - fixed program, test paths
        ["/usr/bin/setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command],
        capture_output=True,
        text=True,
        check=False,
    )


def every_path(root: Path) -> list[Path]:
    return [root, *sorted(root.rglob("*"))]


def loose(paths: list[Path]) -> list[str]:
    """The paths group or others may use (anything beyond 0700 / 0600)."""
    found = []
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path} {mode:04o}")
    return found


@pytest.mark.usefixtures("agents")
@pytest.mark.asyncio
async def test_another_local_user_cannot_read_wallets_stores_or_the_ledger(
    shared_root: Path,
) -> None:
    secrets = [
        shared_root / "buyer1" / "wallet.db",  # the chain seeds: the buyer's money
        shared_root / "buyer1" / "agent.key",
        shared_root / "vendor1" / "store.db",  # the paywords the vendor is owed
        shared_root / "broker" / "ledger.db",
        shared_root / "broker" / "broker.key",
    ]
    for path in secrets:
        assert path.is_file(), path
        stolen = as_nobody("/bin/cat", str(path))
        assert stolen.returncode != 0, f"nobody read {path}"
        assert "Permission denied" in stolen.stderr
    listing = as_nobody("/bin/ls", str(shared_root / "buyer1"))
    assert listing.returncode != 0
    for agent in ("broker", "vendor1", "buyer1"):
        assert loose(every_path(shared_root / agent)) == []
        assert stat.S_IMODE((shared_root / agent).stat().st_mode) == 0o700


@pytest.mark.asyncio
async def test_agents_refuse_a_loosened_directory_or_secret_file(
    agents: AttackHarness, shared_root: Path
) -> None:
    await agents.stop()
    assert agents.info is not None
    info, mqtt = agents.info, agents.mosquitto.user("vendor1")
    vendor_dir, buyer_dir, broker_dir = (shared_root / n for n in ("vendor1", "buyer1", "broker"))

    vendor_dir.chmod(0o755)
    with pytest.raises(
        PermissionsError, match=re.escape(f"{vendor_dir} is open to group or others")
    ):
        await VendorAgent.open(vendor_dir, "vendor1", info, VendorTerms(), mqtt)
    vendor_dir.chmod(0o700)

    (buyer_dir / "wallet.db").chmod(0o644)
    with pytest.raises(PermissionsError, match=r"wallet\.db is open to group or others"):
        await BuyerAgent.open(buyer_dir, "buyer1", info, mqtt)

    wal = broker_dir / "ledger.db-wal"
    wal.touch()
    wal.chmod(0o640)
    with pytest.raises(PermissionsError, match=r"ledger\.db-wal is open to group or others"):
        await BrokerService.open(broker_dir)


def test_the_cli_refuses_a_loosened_wallet_in_one_line(
    shared_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = shared_root / "alice"
    directory.mkdir(mode=0o755)  # made by hand, the way a careless operator would
    (directory / "wallet.db").write_bytes(b"")
    public = shared_root / "broker.pub.json"
    public.write_text(
        json.dumps({"broker": "broker", "sign_key": "11" * 32, "agree_key": "22" * 32})
    )
    code = main(
        [
            "buyer",
            "balance",
            "--name",
            "alice",
            "--data-dir",
            str(directory),
            "--broker-pub",
            str(public),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    wanted = f"micropay: error: {directory} is open to group or others (mode 0755): chmod 700"
    assert err == [f"{wanted} {directory}"]


def test_rendered_mosquitto_files_are_private(shared_root: Path) -> None:
    files = render(shared_root / "mq", 18830)
    assert loose(every_path(shared_root / "mq")) == []
    for path in (files.config, files.acl, files.passwords):
        assert as_nobody("/bin/cat", str(path)).returncode != 0
