"""The long-running broker: MQTT loop, admin socket, periodic projection, signed heads.

Operator actions arriving on the admin socket run under the loop's lock, so their events
are persisted and published in order with what the MQTT side decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from agents.daemons.admin_socket import serve_admin
from agents.daemons.broker_service import BrokerService
from agents.daemons.operator_actions import run_admin_request
from agents.daemons.operator_protocol import Answer, OperatorRequest
from agents.runtime.loop import AgentLoop
from agents.runtime.mqtt import MqttSettings, open_link
from agents.runtime.sd_notify import Notifier
from agents.runtime.supervision import first_failure
from protocol.events import BrokerCoreEvent, PublishedHeadSeen

log = logging.getLogger("micropay.broker")


class BrokerDaemon:
    """The long-running broker: MQTT loop, admin socket, periodic projection."""

    def __init__(
        self, service: BrokerService, mqtt: MqttSettings, witness_interval: float = 30.0
    ) -> None:
        self.service = service
        self.witness_interval = witness_interval
        self._witnessed = -1
        self.published_at: float | None = None
        """When (``time.monotonic()``) the last signed head went out (``None``: none yet)."""
        self.notifier = Notifier.from_environ()  # systemd readiness and watchdog, if asked
        self.loop: AgentLoop[BrokerCoreEvent] = AgentLoop(
            service.core,
            open_link(mqtt),
            service.persist,
            clock=service.clock,
            on_connect=self._announce,
            react=self._react,
            head=lambda: service.store.signed_head,
        )

    @property
    def witnessed(self) -> int:
        """The seq of the last ledger head published on this connection (-1: none yet)."""
        return self._witnessed

    def _react(self, event: BrokerCoreEvent, _now: float) -> None:
        """Its own retained head, read back at connect: is the ledger older than it?"""
        if not isinstance(event, PublishedHeadSeen):
            return
        seq, head = self.service.store.durable_head
        if event.seq > seq or (event.seq == seq and event.head != head):
            log.error(
                "this broker signed and published ledger head %s at %s, but its ledger ends at"
                " %s with another history: the ledger was restored from an older copy or cut."
                " Agents holding receipts above %s will notice and re-send their redemptions;"
                " compare with `micropay audit --witness`",
                event.seq,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.at / 1000)),
                seq,
                seq,
            )

    def _announce(self, now: float) -> None:
        core = self.service.core
        core.publish_identity(now)
        core.publish_revocations(now)
        self._witnessed = -1  # a new connection: publish the head again
        self._publish_head(now)

    def _publish_head(self, now: float) -> None:
        """Publish the durable ledger head if it moved since the last publication."""
        seq, head = self.service.store.durable_head
        if seq > self._witnessed:
            self.service.core.publish_ledger_head(seq, head, now)
            self._witnessed = seq
            self.published_at = time.monotonic()

    async def _witness_periodically(self) -> None:
        """Every agent connected keeps these signed heads: a rewrite contradicts them."""
        while True:
            await asyncio.sleep(self.witness_interval)
            if self.loop.connected.is_set():
                await self.loop.act(self._publish_head)

    async def stop(self) -> None:
        """Publish the final signed head (what a restored ledger is compared with), then stop."""
        self.notifier.stopping("flushing the ledger and signing its head")
        if self.loop.connected.is_set() and not self.loop.stopping.is_set():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.loop.act(self._publish_head)
        self.loop.stopping.set()

    async def _operator(self, request: OperatorRequest) -> Answer:
        return await self.loop.act_async(lambda: run_admin_request(self.service, request))

    async def _project_periodically(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            await self.service.project()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT; then finish in-flight work and close the ledger.

        Crash-only: if the ledger writer, the projector or the head publisher stops, the
        daemon raises ``AgentFailedError`` at once instead of living on without it.
        """
        loop = asyncio.get_running_loop()
        stopping: set[asyncio.Task[None]] = set()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: stopping.add(asyncio.create_task(self.stop())))
        admin_path = self.service.files.admin  # ours to replace and remove: we hold the lock
        server = await serve_admin(admin_path, self._operator)
        log.info(
            "broker %s serving (ledger %s, head %s)",
            self.service.core.account,
            self.service.files.ledger,
            self.service.store.durable_head[0],
        )
        try:
            await first_failure(
                self.loop.run(),
                {
                    "the ledger writer": self.service.wait_failed(),
                    "the projector": self._project_periodically(),
                    "the ledger-head publisher": self._witness_periodically(),
                },
                alongside=[self.notifier.serve(self.loop, f"broker {self.service.core.account}")],
            )
        finally:
            server.close()
            admin_path.unlink(missing_ok=True)
            await self.service.close()
            log.info("broker stopped; ledger head %s", self.service.store.durable_head[0])
