"""One operator typo must not freeze the broker; a daemon that cannot write stops loudly.

An out-of-range number used to kill the ledger writer while the admin call held the loop:
MQTT stopped, nothing was logged, the process stayed alive. Numbers are now bounded where
they enter (the command line, the environment, the file, the admin socket), and a task
the broker cannot live without takes the process down with it, non-zero.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from agents.cli.main import main
from agents.daemons.admin_socket import exchange
from agents.demo.processes import Demo
from tests.attacks.rogue import AttackHarness

HUGE = 100_000_000_000_000_000_000_000


async def send_raw(socket: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """Raw JSON past the typed client, so that malformed fields reach the daemon as sent."""
    reply = await exchange(socket, json.dumps(request).encode() + b"\n")
    if reply is None:
        return None
    answer: dict[str, Any] = json.loads(reply)
    return answer


@pytest.mark.asyncio
async def test_an_out_of_range_credit_limit_is_refused_and_the_broker_keeps_serving(
    harness: AttackHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    broker_dir = harness.root / "broker"
    typed = ["broker", "open-account", "whale", "--role", "buyer", "--data-dir", str(broker_dir)]
    with pytest.raises(SystemExit) as usage:
        await asyncio.to_thread(main, [*typed, "--credit-limit", str(HUGE)])
    assert usage.value.code == 2
    assert "--credit-limit: must be between 0 and" in capsys.readouterr().err

    request: dict[str, Any] = {"command": "open-account", "account": "whale", "role": "buyer"}
    for limit in (HUGE, -1, "12", True, 1.5, None):
        answer = await send_raw(broker_dir / "admin.sock", {**request, "credit_limit": limit})
        assert answer is not None
        assert answer["ok"] is False
        assert "credit_limit" in answer["error"]
    for bad in ({"account": "x" * 65}, {"role": "broker"}, {"currency": "EURO" * 100}):
        answer = await send_raw(broker_dir / "admin.sock", {**request, "credit_limit": 5, **bad})
        assert answer is not None
        assert answer["ok"] is False
    answer = await send_raw(
        broker_dir / "admin.sock",
        {"command": "close-period", "period": "2026-11", "fee_basis_points": HUGE},
    )
    assert answer is not None
    assert answer["ok"] is False

    assert harness.daemon is not None
    assert "whale" not in harness.daemon.service.core.accounts
    await harness.broker_serving("vendor1")  # MQTT handling goes on


def test_a_broker_whose_ledger_refuses_writes_exits_non_zero_within_a_second(
    demo: Demo,
) -> None:
    system = demo
    broker = system.processes["broker"]
    with sqlite3.connect(system.broker_dir / "ledger.db") as db:
        # The disk "fails" under the running daemon: every insert is refused from now on.
        db.execute(
            "CREATE TRIGGER failing BEFORE INSERT ON events"
            " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    request = {"command": "open-account", "account": "dave", "role": "buyer", "credit_limit": 5}
    answer = asyncio.run(send_raw(system.broker_dir / "admin.sock", request))
    refused_at = time.monotonic()
    assert answer is not None
    assert answer["ok"] is False
    assert "the ledger refused the write" in answer["error"]
    assert broker.wait(timeout=5) == 1
    assert time.monotonic() - refused_at < 1.5
    log = (system.root / "logs" / "broker.log").read_text().splitlines()
    assert any(
        "CRITICAL" in line and "stopping: the ledger writer stopped" in line for line in log
    ), log[-5:]
