"""Running ``micropay`` commands against the system of the ``system`` fixture."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

from agents.daemons.operator_client import operator_request
from agents.daemons.operator_protocol import BrokerStatus, Status
from agents.demo.processes import VENDORS, Demo


def micropay(
    system: Demo, *arguments: str, who: str = "broker", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run one ``micropay`` command as a separate process, as an operator would."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        system.command(*arguments),
        env=system.env(who),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """A command's JSON output, once it succeeded."""
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def broker_status(system: Demo) -> BrokerStatus:
    """The broker's status, through its admin socket."""
    answer = asyncio.run(operator_request(system.broker_dir, Status()))
    assert isinstance(answer, BrokerStatus), answer
    return answer


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll until ``condition`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def pay(
    system: Demo, buyer: str, vendor: str, payments: int, units: int = 1
) -> subprocess.Popen[str]:
    """Start ``buyer pay`` in the background."""
    pub = str(system.broker_dir / "broker.pub.json")
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        system.command(
            *("buyer", "pay", vendor, "--name", buyer, "--broker-pub", pub),
            *("--data-dir", str(system.root / buyer), "--payments", str(payments)),
            *("--units", str(units), "--timeout", "60"),
        ),
        env=system.env(buyer),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_vendor(system: Demo, name: str, *extra: str) -> subprocess.Popen[bytes]:
    """Start one of the demo's vendor daemons (again), with extra options."""
    unit_value, max_jump, item = VENDORS[name]
    return system.spawn(
        name,
        *("vendor", "run", "--name", name),
        *("--broker-pub", str(system.broker_dir / "broker.pub.json")),
        *("--data-dir", str(system.root / name), "--unit-value", str(unit_value)),
        *("--max-jump", str(max_jump), "--item", item, *extra),
    )
