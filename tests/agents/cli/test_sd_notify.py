"""systemd readiness and watchdog, as a service manager sees them.

The real daemons run as processes with NOTIFY_SOCKET naming an AF_UNIX datagram socket the
test binds, as systemd's own is. Credentials passed with each datagram (SO_PASSCRED) tell
which process sent it, as they tell systemd for ``NotifyAccess=main``.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.demo.processes import Demo
from tests.agents.cli.system import broker_status

WATCHDOG_USEC = 600_000  # a ping every 0.3 s
CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


class Manager:
    """The service manager's end of the notify protocol: a bound datagram socket."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def receive(self, within: float) -> list[tuple[int, str]]:
        """Every (sender pid, message) that arrives within ``within`` seconds."""
        out: list[tuple[int, str]] = []
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data, ancillary, _flags, _address = self.sock.recvmsg(
                    4096, socket.CMSG_SPACE(CREDENTIALS.size)
                )
            except TimeoutError:
                break
            pids = [
                CREDENTIALS.unpack(cdata[: CREDENTIALS.size])[0]
                for level, kind, cdata in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
            ]
            out.append((pids[0], data.decode()))
        return out

    def wait_for(self, field: str, within: float = 30.0) -> tuple[int, str]:
        """The first message carrying ``field`` (a line such as ``READY=1``)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for pid, message in self.receive(0.1):
                if field in message.splitlines():
                    return pid, message
        pytest.fail(f"no {field} within {within} s")


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    """A notify socket on a path (the abstract namespace is tested with the vendor)."""
    ours = Manager(str(tmp_path / "notify"))
    try:
        yield ours
    finally:
        ours.sock.close()


def under_systemd(system: Demo, name: str, notify: str, *arguments: str) -> subprocess.Popen[bytes]:
    """Start a daemon as systemd would for ``Type=notify`` with ``WatchdogSec=``."""
    env = {**system.env(name), "NOTIFY_SOCKET": notify, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    with (system.root / "logs" / f"{name}-notify.log").open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            system.command(*arguments), env=env, stdout=log, stderr=log
        )
    system.processes[name] = process
    return process


def pings(messages: list[tuple[int, str]], pid: int) -> int:
    return sum(1 for sender, text in messages if sender == pid and "WATCHDOG=1" in text)


def test_the_broker_is_ready_once_serving_pings_while_alive_and_says_it_stops(
    system: Demo, manager: Manager
) -> None:
    system.stop("broker")
    broker = under_systemd(
        system, "broker", manager.address, "broker", "run", "--data-dir", str(system.broker_dir)
    )
    pid, ready = manager.wait_for("READY=1")
    # Ready means serving: the admin socket answers at once.
    assert pid == broker.pid
    assert broker_status(system).accounts > 0
    assert "STATUS=broker broker: serving" in ready.splitlines()

    alive = manager.receive(1.5)
    assert pings(alive, broker.pid) >= 3  # every WATCHDOG_USEC / 2

    broker.send_signal(signal.SIGSTOP)  # a loop that makes no progress sends nothing
    try:
        manager.receive(0.2)  # what was already under way
        assert pings(manager.receive(1.5), broker.pid) == 0
    finally:
        broker.send_signal(signal.SIGCONT)
    assert manager.wait_for("WATCHDOG=1", within=5)[0] == broker.pid

    broker.send_signal(signal.SIGTERM)
    pid, stopping = manager.wait_for("STOPPING=1", within=10)
    assert pid == broker.pid
    assert "STATUS=flushing the ledger and signing its head" in stopping.splitlines()
    assert broker.wait(30) == 0


def test_a_vendor_notifies_an_abstract_socket(system: Demo) -> None:
    system.stop("news-stand")
    manager = Manager(f"@micropay-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        vendor = under_systemd(
            system,
            "news-stand",
            manager.address,
            *("vendor", "run", "--name", "news-stand", "--data-dir"),
            *(str(system.root / "news-stand"), "--broker-pub"),
            str(system.broker_dir / "broker.pub.json"),
        )
        pid, ready = manager.wait_for("READY=1")
        assert pid == vendor.pid
        assert "STATUS=vendor news-stand: serving" in ready.splitlines()
        assert pings(manager.receive(1.2), vendor.pid) >= 2

        vendor.send_signal(signal.SIGTERM)
        pid, stopping = manager.wait_for("STOPPING=1", within=10)
        assert pid == vendor.pid
        assert "STATUS=redeeming what it holds" in stopping.splitlines()
        assert vendor.wait(30) == 0
    finally:
        manager.sock.close()
