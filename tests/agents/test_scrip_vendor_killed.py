"""A vendor process SIGKILLed between recording a scrip payment and answering it.

The vendor runs as `micropay vendor run --scrip`, its own process, and reaches Mosquitto
through a TCP proxy. Once the payment is on its way the proxy swallows everything the
vendor sends, so its answer reaches no one; when its spent set holds the payment, it is
killed. Started again, it refuses the same generation paid another way, answers the
identical payment with the same change, and the broker credits the serial once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.daemons.buyer_agent import BuyerAgent, BuyerError
from agents.daemons.buyer_scrip import mint, pay_with_scrip
from broker_ledger.audit import LedgerAudit
from tests.agents.conftest import Broker
from tests.agents.harness import Harness, wait_until
from tests.agents.tcp_proxy import Proxy


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What a store holds now; nothing while it is being created."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


@contextlib.contextmanager
def vendor_process(
    harness: Harness, port: int, token: bytes = b""
) -> Iterator[subprocess.Popen[bytes]]:
    """`micropay vendor run --scrip` as its own process, on Mosquitto at ``port``."""
    root = harness.root
    env = {
        **os.environ,
        "MICROPAY_MQTT_PASSWORD": harness.mosquitto.passwords["vendor1"],
        "MICROPAY_LOG_LEVEL": "info",
    }
    if token:
        env["MICROPAY_TOKEN"] = token.hex()
    command = [
        sys.executable,
        *("-m", "agents.cli.main", "vendor", "run", "--name", "vendor1", "--scrip"),
        *("--broker-pub", str(root / "broker" / "broker.pub.json")),
        *("--data-dir", str(root / "vendor1"), "--mqtt-port", str(port)),
        *("--item", "article=30", "--redeem-interval", "1"),
    ]
    with (root / "vendor1.log").open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)  # noqa: S603
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # it deposits as it stops
            process.wait(30)


@pytest.mark.asyncio
async def test_a_vendor_killed_after_its_record_refuses_the_generation_and_repeats_the_change(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    daemon = await harness.start_broker()
    broker = daemon.service.core
    token = await harness.open_account("vendor1", "vendor", 0)
    store = tmp_path / "vendor1" / "store.db"
    spent_set = "SELECT serial, generation, price, change FROM spent_scrip"
    async with Proxy(mosquitto.port) as proxy:
        with vendor_process(harness, proxy.port, token) as first:
            await wait_until(lambda: broker.accounts["vendor1"].serial > 0, 30)
            await harness.enroll_buyer("buyer1")
            buyer = await harness.buyer("buyer1")
            await buyer.run(lambda: mint(buyer, "vendor1", 100, 10))
            shutil.copytree(tmp_path / "buyer1", tmp_path / "buyer1-backup")  # holds generation 0

            proxy.swallow("up")  # from now on, nothing the vendor sends leaves the host
            wallet = await harness.buyer("buyer1")
            paying = asyncio.create_task(
                wallet.run(lambda: pay_with_scrip(wallet, "vendor1", 1, 30, timeout=5))
            )
            await wait_until(lambda: [r[:3] for r in rows(store, spent_set)] == [(1, 0, 30)])
            first.send_signal(signal.SIGKILL)  # the record is durable, the answer went nowhere
            first.wait()
            with pytest.raises(BuyerError, match="did not answer the scrip payment"):
                await paying
    assert proxy.swallowed["up"] > 0
    ((_, _, _, change),) = rows(store, spent_set)
    wallet_file = tmp_path / "buyer1" / "wallet.db"
    assert rows(wallet_file, "SELECT serial, generation, price FROM scrip_pending") == [(1, 0, 30)]
    assert broker.scrip.records[1].generation is None  # its deposit was swallowed too

    with vendor_process(harness, mosquitto.port):
        # Started again, it deposits what it recorded before taking anything else.
        await wait_until(lambda: broker.scrip.records[1].generation == 0, 30)
        assert broker.scrip.records[1].change == change

        assert harness.info is not None
        backup = await BuyerAgent.open(
            tmp_path / "buyer1-backup", "buyer1", harness.info, mosquitto.user("buyer1")
        )
        with pytest.raises(BuyerError, match=r"refused the scrip payment: spent \(scrip\)"):
            await backup.run(lambda: pay_with_scrip(backup, "vendor1", 1, 40, timeout=10))

        resumed = await harness.buyer("buyer1")  # resends the payment it wrote, byte for byte
        await resumed.run(lambda: wait_until(lambda: not resumed.core.scrip_pending, 20))
        (held,) = resumed.core.scrip.values()
        assert (held.scrip.generation, held.scrip.value, held.tagged) == (1, 70, change)
    await harness.stop()

    ledger = tmp_path / "broker" / "ledger.db"
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
        kinds = db.execute("SELECT type FROM event_log WHERE stream = 'scrip:1' ORDER BY version")
        assert [k for (k,) in kinds] == ["scrip-minted", "scrip-deposited"]
    report = LedgerAudit(ledger).run()
    assert report.ok, report.findings
    assert (report.scrip_minted, report.scrip_credited, report.scrip_outstanding) == (100, 30, 70)
    assert report.debited == report.credited == 30
