"""One process per data directory: a second daemon, or an offline writer, is refused at once.

Real processes on a real Mosquitto. Before the lock, a second ``broker run`` on the same
directory started, removed the first one's admin socket on exit, and the next operator
command wrote the ledger behind the running daemon's back until it crashed.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

from agents.daemons.admin_socket import send_admin_request
from agents.daemons.broker_files import init_broker
from agents.daemons.broker_service import BrokerService
from agents.daemons.operator_protocol import BrokerStatus, Status
from agents.demo.processes import Demo
from agents.runtime.datadir_lock import lock_holder
from tests.agents.cli.system import as_json, broker_status, micropay, pay, start_vendor, wait_for


def answers(directory: Path) -> bool:
    """Whether a daemon answers on the directory's admin socket."""
    reply = asyncio.run(send_admin_request(directory / "admin.sock", Status()))
    return isinstance(reply, BrokerStatus)


def test_a_second_broker_daemon_exits_at_once_and_the_first_keeps_serving(system: Demo) -> None:
    first = system.processes["broker"]
    socket = system.broker_dir / "admin.sock"
    started = time.monotonic()
    second = micropay(system, "broker", "run", "--data-dir", str(system.broker_dir))
    assert second.returncode == 1
    assert time.monotonic() - started < 5
    assert f"already running (pid {first.pid})" in second.stderr
    assert str(system.broker_dir) in second.stderr
    assert "broker daemon" in second.stderr
    # The first daemon's socket survived the second's exit, and it serves the operator:
    # this account opening goes through the daemon, not behind its back.
    assert first.poll() is None
    assert socket.is_socket()
    before = broker_status(system).accounts
    opened = micropay(
        system,
        "broker",
        "open-account",
        "dave",
        "--role",
        "buyer",
        "--data-dir",
        str(system.broker_dir),
    )
    assert as_json(opened)["account"] == "dave"
    assert broker_status(system).accounts == before + 1
    assert first.poll() is None
    assert lock_holder(system.broker_dir) == (first.pid, "broker daemon")


def test_a_second_vendor_daemon_exits_at_once_and_the_first_keeps_serving(system: Demo) -> None:
    first = system.processes["news-stand"]
    started = time.monotonic()
    second = subprocess.run(  # noqa: S603 - our own interpreter and module
        system.command(
            *("vendor", "run", "--name", "news-stand"),
            *("--broker-pub", str(system.broker_dir / "broker.pub.json")),
            *("--data-dir", str(system.root / "news-stand")),
        ),
        env=system.env("news-stand"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert second.returncode == 1
    assert time.monotonic() - started < 5
    assert f"already running (pid {first.pid})" in second.stderr
    assert str(system.root / "news-stand") in second.stderr
    assert first.poll() is None
    buyer = pay(system, "alice", "news-stand", 5, 2)
    out, err = buyer.communicate(timeout=60)
    assert buyer.returncode == 0, err
    assert '"units": 10' in out
    assert first.poll() is None


def test_an_offline_writer_is_refused_while_another_holds_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "broker"
    asyncio.run(init_broker(directory, "broker"))
    command = Demo(tmp_path, 0).command(
        "broker", "open-account", "eve", "--role", "buyer", "--data-dir", str(directory)
    )

    async def while_held() -> subprocess.CompletedProcess[str]:
        service = await BrokerService.open(directory)  # an offline writer, in this process
        try:
            return await asyncio.to_thread(
                subprocess.run,
                command,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        finally:
            await service.close()

    refused = asyncio.run(while_held())
    assert refused.returncode == 1
    assert "already running" in refused.stderr
    assert str(directory) in refused.stderr
    status = subprocess.run(  # noqa: S603 - our own interpreter and module
        Demo(tmp_path, 0).command("broker", "status", "--json", "--data-dir", str(directory)),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert as_json(status)["accounts"] == 0  # nothing was written behind the holder's back
    again = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    assert as_json(again)["account"] == "eve"


def test_after_kill_9_of_the_holder_a_new_daemon_starts(system: Demo) -> None:
    killed = system.processes.pop("broker")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    socket = system.broker_dir / "admin.sock"
    assert socket.exists()  # left behind: nobody may remove it but a lock holder
    assert not answers(system.broker_dir)
    restarted = system.spawn("broker", "broker", "run", "--data-dir", str(system.broker_dir))
    wait_for(lambda: answers(system.broker_dir))
    assert restarted.poll() is None
    assert lock_holder(system.broker_dir) == (restarted.pid, "broker daemon")

    vendor = system.processes.pop("charger-7")
    vendor.send_signal(signal.SIGKILL)
    vendor.wait()
    again = start_vendor(system, "charger-7")
    wait_for(lambda: lock_holder(system.root / "charger-7")[0] == again.pid)
    buyer = pay(system, "bob", "charger-7", 3, 1)
    _, err = buyer.communicate(timeout=60)
    assert buyer.returncode == 0, err
    assert again.poll() is None


def test_a_starting_daemon_waits_for_an_offline_command_to_finish(tmp_path: Path) -> None:
    directory = tmp_path / "broker"
    asyncio.run(init_broker(directory, "broker"))
    # No Mosquitto here: the daemon's lock and admin socket come before its MQTT link.
    demo = Demo(tmp_path, 0)
    demo.passwords["broker"] = "unused"

    async def scenario() -> subprocess.Popen[bytes]:
        service = await BrokerService.open(directory)  # an operator's offline command
        daemon = demo.spawn("broker", "broker", "run", "--data-dir", str(directory))
        await asyncio.sleep(1.0)
        assert daemon.poll() is None, "the daemon waits instead of failing"
        await service.close()
        return daemon

    (tmp_path / "logs").mkdir(mode=0o700)
    daemon = asyncio.run(scenario())
    try:
        wait_for(lambda: answers(directory))
        assert lock_holder(directory) == (daemon.pid, "broker daemon")
    finally:
        demo.stop_all()
