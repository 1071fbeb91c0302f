"""A billing period is closed once, under a valid name; a repeat on other terms is refused.

Both ways in are checked: the daemon's admin socket (what ``close-period`` uses while the
broker runs) and the ledger directly (the daemon stopped).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agents.cli.main import main
from agents.daemons.admin_socket import exchange
from agents.daemons.broker_files import init_broker
from broker_ledger.billing import PeriodError, close_period
from broker_ledger.store import EventStore
from tests.agents.conftest import Broker
from tests.agents.harness import Harness
from tests.support.world import seeded_identity

BAD_NAMES = ("", "hello world", "-x", ".hidden", "x" * 33, "2026/11", "période")


def ledger_events(directory: Path) -> int:
    with sqlite3.connect(f"file:{directory / 'ledger.db'}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
    return int(count)


def close(directory: Path, period: str, *extra: str) -> int:
    return main(["broker", "close-period", "--data-dir", str(directory), *extra, "--", period])


def test_offline_names_are_checked_and_a_repeat_must_keep_its_terms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = tmp_path / "broker"
    asyncio.run(init_broker(broker, "broker"))
    for name in BAD_NAMES:
        with pytest.raises(SystemExit) as usage:
            close(broker, name)
        assert usage.value.code == 2
        assert "a period name is 1-32 characters" in capsys.readouterr().err
    assert ledger_events(broker) == 0

    assert close(broker, "2026-11", "--fee-bps", "100") == 0
    first = capsys.readouterr()
    assert json.loads(first.out)["newly_closed"] is True
    written = ledger_events(broker)

    assert close(broker, "2026-11", "--fee-bps", "100") == 0
    again = capsys.readouterr()
    assert json.loads(again.out)["newly_closed"] is False
    assert (
        again.err == "period 2026-11 was already closed (fee 100 basis points): nothing changed\n"
    )

    assert close(broker, "2026-11", "--fee-bps", "0") == 1
    refused = capsys.readouterr()
    assert refused.out == ""
    assert refused.err.startswith(
        "micropay: error: period 2026-11 was already closed with a fee of 100 basis points"
    )
    assert refused.err.rstrip().endswith("it cannot be closed again with 0")
    assert ledger_events(broker) == written


@pytest_asyncio.fixture
async def running(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, mosquitto)
    await harness.start_broker()
    try:
        yield harness
    finally:
        await harness.stop()


async def raw(directory: Path, request: dict[str, Any]) -> dict[str, Any]:
    """A request line as any local process could send it, past the typed client."""
    reply = await exchange(directory / "admin.sock", json.dumps(request).encode() + b"\n")
    assert reply is not None, "the daemon did not answer"
    answer: dict[str, Any] = json.loads(reply)
    return answer


@pytest.mark.asyncio
async def test_the_running_daemon_refuses_bad_names_and_other_terms(
    running: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = running.root / "broker"
    for name in BAD_NAMES:
        answer = await raw(broker, {"command": "close-period", "period": name})
        assert answer["ok"] is False
        assert "a period name is 1-32 characters" in answer["error"]

    request = {"command": "close-period", "period": "2026-Q4", "fee_basis_points": 250}
    answer = await raw(broker, request)
    assert answer["ok"] is True
    assert answer["summary"]["newly_closed"] is True
    assert answer["summary"]["fee_basis_points"] == 250
    answer = await raw(broker, request)
    assert (answer["ok"], answer["summary"]["newly_closed"]) == (True, False)
    answer = await raw(broker, {**request, "fee_basis_points": 0})
    assert answer["ok"] is False
    assert "already closed with a fee of 250 basis points" in answer["error"]

    # The command goes through the same socket while the daemon runs.
    assert await asyncio.to_thread(close, broker, "2026-Q4", "--fee-bps", "1") == 1
    assert "fee of 250 basis points" in capsys.readouterr().err
    assert await asyncio.to_thread(close, broker, "2026-Q4", "--fee-bps", "250") == 0
    assert "already closed" in capsys.readouterr().err
    status = await raw(broker, {"command": "status"})  # and the daemon serves on
    assert status["ok"] is True


@pytest.mark.asyncio
async def test_the_ledger_itself_refuses_a_bad_name(tmp_path: Path) -> None:
    store = await EventStore.open(tmp_path / "l.db", "broker", signer=seeded_identity("broker"))
    try:
        for name in BAD_NAMES:
            with pytest.raises(PeriodError, match="a period name is"):
                await close_period(store, name, at=1)
        assert store.head[0] == 0
    finally:
        await store.close()
