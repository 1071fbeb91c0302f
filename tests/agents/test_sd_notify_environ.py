"""What the notifier takes from the environment systemd sets, and how it fails quietly."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from agents.runtime.sd_notify import Notifier


def test_the_watchdog_is_ours_only_for_our_pid() -> None:
    ours = Notifier.from_environ(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert ours.watchdog_interval == 15.0  # half of WatchdogSec=30
    child = Notifier.from_environ(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}
    )
    assert child.watchdog_interval is None
    assert Notifier.from_environ({"WATCHDOG_USEC": "0"}).watchdog_interval is None


def test_an_abstract_address_and_no_manager(tmp_path: Path) -> None:
    assert Notifier("@micropay").address == "\0micropay"
    assert not Notifier.from_environ({}).send("READY=1")
    assert not Notifier(str(tmp_path / "nobody-listens")).send("READY=1")


def test_one_datagram_per_message(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        assert Notifier(str(path)).send("READY=1", "STATUS=serving")
        assert manager.recv(4096) == b"READY=1\nSTATUS=serving"
