"""systemd's notify protocol, spoken directly: one datagram per state change to $NOTIFY_SOCKET.

``Type=notify`` units start dependants only after ``READY=1``, and ``WatchdogSec=`` restarts a
daemon whose pings stop. The protocol is a few ``KEY=value`` lines in an AF_UNIX datagram, so
no library is needed. Without $NOTIFY_SOCKET (not under systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from typing import Protocol

log = logging.getLogger("micropay.sd_notify")


class Responsive(Protocol):
    """What the watchdog asks before each ping (``AgentLoop`` is one)."""

    connected: asyncio.Event
    link_error: str

    async def responsive(self, within: float) -> bool:
        """Whether the loop still makes progress, answered within ``within`` seconds."""
        ...


class Notifier:
    """Sends readiness, status, watchdog pings and stopping to the service manager."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        # An address starting with "@" names a socket in the abstract namespace.
        self.address = "\0" + address[1:] if address and address.startswith("@") else address
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier systemd asked for; the watchdog only if it is meant for this process."""
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        ours = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        return cls(environ.get("NOTIFY_SOCKET") or None, int(usec) if ours else None)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when there is no one to tell."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(0)  # never stall the event loop on the manager
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._failed:  # once: a missing manager must not flood the log
                log.warning("cannot notify the service manager at %r: %s", self.address, exc)
                self._failed = True
            return False
        return True

    def stopping(self, status: str = "stopping") -> None:
        """Tell the manager that shutdown has begun (it then waits up to TimeoutStopSec)."""
        self.send("STOPPING=1", f"STATUS={status}")

    async def serve(self, loop: Responsive, what: str) -> None:
        """READY=1 once ``loop`` is connected, then STATUS changes and the watchdog pings.

        Runs beside the daemon's loop in its TaskGroup. A ping is sent only when the loop
        proves it makes progress (``responsive``), so a hung store or a stopped process
        stops the pings and systemd restarts the daemon.
        """
        if not self.address:
            return
        self.send(f"STATUS={what}: connecting to MQTT")
        await loop.connected.wait()
        self.send("READY=1", f"STATUS={what}: serving", f"MAINPID={os.getpid()}")
        was_connected = True
        interval = self.watchdog_interval or 5.0
        while True:
            await asyncio.sleep(interval)
            connected = loop.connected.is_set()
            if connected != was_connected:
                state = "serving" if connected else f"MQTT lost ({loop.link_error}), reconnecting"
                self.send(f"STATUS={what}: {state}")
                was_connected = connected
            if self.watchdog_interval and await loop.responsive(interval / 2):
                self.send("WATCHDOG=1")
