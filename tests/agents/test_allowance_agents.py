"""MiniPay's daily allowance over a real Mosquitto: the operator's CLI, a vendor, a wallet."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol.allowance import day_of
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker
from tests.agents.harness import Harness

TERMS = VendorTerms(unit_value=1, currency="EUR", max_length=10_000, max_jump=100, allowance=True)


async def micropay(*arguments: str, password: str = "") -> dict[str, Any]:
    """One ``micropay`` command as its own process, as an operator or a device runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROPAY_")}
    if password:
        env["MICROPAY_MQTT_PASSWORD"] = password
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agents.cli.main", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def counted(store: Path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT buyer, day, amount FROM allowance_chains ORDER BY rowid")
        return [(r[0], r[1], r[2]) for r in rows.fetchall()]


@pytest.mark.asyncio
async def test_a_buyer_pays_off_line_within_its_allowance_and_on_line_above_it(
    tmp_path: Path, mosquitto: Broker
) -> None:
    harness = Harness(tmp_path, mosquitto)
    try:
        daemon = await harness.start_broker()
        kiosk = await harness.start_vendor("kiosk", TERMS)
        await harness.enroll_buyer("alice")
        broker_dir = str(tmp_path / "broker")
        answer = await micropay("broker", "set-allowance", "alice", "50", "--data-dir", broker_dir)
        assert answer == {"account": "alice", "allowance": 50}
        assert daemon.service.core.allowances.settings == {"alice": 50}

        # Within the allowance: the chain is sized to the grant and taken off-line.
        buyer = await harness.buyer("alice")
        paid = await buyer.run(lambda: buyer.pay("kiosk", 3, 10))
        assert paid.acknowledged == 30
        core = daemon.service.core
        assert not core.chains  # nothing registered: the broker was not asked
        assert kiosk.core.allowance_counts.today("alice", buyer.loop.clock()) == 50

        # Above it: the next chain goes to the broker, which registers and reserves it.
        buyer = await harness.buyer("alice")
        paid = await buyer.run(lambda: buyer.pay("kiosk", 1, 30))
        assert paid.acknowledged >= 30
        (registered,) = core.chains.values()
        assert registered.buyer == "alice"
        assert registered.reserved > 0
        today = day_of(buyer.loop.clock())
        rows = counted(tmp_path / "kiosk" / "store.db")
        assert rows[0] == ("alice", today, 50)
        assert rows[1] == ("alice", today, 0)

        balance = await micropay(
            *("buyer", "balance", "--name", "alice", "--data-dir", str(tmp_path / "alice")),
            *("--broker-pub", str(tmp_path / "broker" / "broker.pub.json")),
            *("--mqtt-port", str(mosquitto.port)),
            password=mosquitto.passwords["alice"],
        )
        allowance = balance["allowance"]
        assert allowance["per_vendor"] == 50
        assert allowance["committed_today"]["kiosk"] >= 50
        assert balance["reserved"] >= 4 * 50  # the day's grant holds K times its amount
    finally:
        await harness.stop()
