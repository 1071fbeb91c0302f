"""The vendor daemon: accept commitments, verify paywords, store them, redeem them.

State lives in the vendor's SQLite store: its certificate, and per chain the commitment,
the highest payword accepted and what the broker has credited. Accepted paywords are
stored (one transaction per batch of messages) before the receipts go out. Redemption
runs on the core's timer, is retried with backoff while the broker is unreachable
(store-and-forward), and runs once more at shutdown. Every scrip record a restarted vendor
holds is deposited again as soon as it is connected, confirmed or not (the store may be
older than the broker's ledger), and a further generation of those serials is answered
``broker unreachable`` until the broker has answered; a deposit the broker refuses for
good is kept for the operator and not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agents.daemons.agent_keys import restore_broker_keys, settle_rekey
from agents.daemons.agent_store import AgentStore
from agents.daemons.vendor_store import VendorStore
from agents.runtime.datadir_lock import DataDirLock
from agents.runtime.keystore import create_identity, load_identity
from agents.runtime.loop import AgentLoop, Clock
from agents.runtime.mqtt import MqttSettings, open_link
from agents.runtime.private_files import make_private_dir
from agents.runtime.sd_notify import Notifier
from agents.runtime.supervision import first_failure
from protocol.allowance import day_of
from protocol.endpoint import BrokerInfo
from protocol.events import (
    CertificateReceived,
    PaymentAccepted,
    ScripAccepted,
    ScripDepositRefused,
    ScripRepeatAnswered,
    VendorEvent,
)
from protocol.vendor import VendorCore, VendorTerms

log = logging.getLogger("micropay.vendor")

KEY_FILE: Final = "agent.key"
STORE_FILE: Final = "store.db"


@dataclass
class VendorCounters:
    """What the daemon has done since it started."""

    payments: int = 0
    amount: int = 0
    scrip_payments: int = 0
    scrip_amount: int = 0
    scrip_repeats: int = 0
    scrip_deposits_refused: int = 0


class VendorAgent:
    """A vendor core with its store and MQTT loop."""

    def __init__(
        self, core: VendorCore, store: AgentStore, mqtt: MqttSettings, clock: Clock = time.time
    ) -> None:
        self.core = core
        self.store = store
        self.counters = VendorCounters()
        self.loop: AgentLoop[VendorEvent] = AgentLoop(
            core,
            open_link(mqtt),
            store.record,
            clock=clock,
            on_connect=self._announce,
            react=self._react,
        )
        self.token: bytes | None = None

    @classmethod
    async def open(  # noqa: PLR0913 - where, who, whose broker, what terms, how to connect
        cls,
        directory: Path,
        account: str,
        broker: BrokerInfo,
        terms: VendorTerms,
        mqtt: MqttSettings,
        clock: Clock = time.time,
    ) -> VendorAgent:
        """Load (or create) keys, reopen the store they own, restore every chain."""
        make_private_dir(directory)
        lock = await DataDirLock.acquire_for_daemon(directory, "vendor daemon")
        try:
            settle_rekey(directory, directory / STORE_FILE)  # an interrupted key rotation
            key_path = directory / KEY_FILE
            identity = load_identity(key_path) if key_path.exists() else create_identity(key_path)
        except BaseException:
            lock.release()
            raise
        store = await VendorStore.open(directory / STORE_FILE, lock, owner=identity)
        try:
            core = VendorCore(account, identity, broker, terms)
            await restore_broker_keys(core, store)  # key rotation: the broker's new key
            await _restore(core, store, clock())
        except BaseException:
            await store.close()
            raise
        return cls(core, store, mqtt, clock)

    def _react(self, event: VendorEvent, now: float) -> None:
        match event:
            case PaymentAccepted():
                self.counters.payments += 1
                self.counters.amount += event.amount
            case ScripAccepted():
                self.counters.scrip_payments += 1
                self.counters.scrip_amount += event.price
            case ScripRepeatAnswered():
                self.counters.scrip_repeats += 1
                log.info(
                    "scrip %s generation %s: the broker had credited it already; %s answered"
                    " with its change, not served again",
                    event.serial,
                    event.generation,
                    event.buyer,
                )
            case ScripDepositRefused():
                self.counters.scrip_deposits_refused += 1
                log.warning(
                    "the broker refused the deposit of scrip %s generation %s for good (%s):"
                    " not sent again, kept in the store for the operator (scrip_refused)",
                    event.serial,
                    event.generation,
                    event.detail,
                )
            case CertificateReceived():
                log.info("enrolled: certificate %s", event.serial)
                self.core.publish_offer(now)
            case _:
                pass

    def _announce(self, now: float) -> None:
        if self.core.certificate:
            self.core.publish_offer(now)
        elif self.token is not None:
            self.core.enroll(self.token, now)
        else:
            log.error(
                "not enrolled: start once with the operator's token"
                " (--token-file FILE or MICROPAY_TOKEN)"
            )

    async def shutdown(self, within: float = 10.0) -> None:
        """Redeem everything held, wait (bounded) for the broker's receipts, then stop.

        Owed deposits are waited for however the run went (a restarted vendor's included):
        when the link is down, up to ``within`` for it to come back first.
        """
        deadline = time.monotonic() + within
        if self._owed() and not self.loop.connected.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self.loop.connected.wait()
        if self.loop.connected.is_set():
            await self.loop.act(self.core.redeem_all)
            await self.loop.act(self.core.deposit_all)
            # Both waited for (bounded), so the store keeps the broker's signed head over them.
            while self._owed() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        if self.core.unredeemed_amount:
            log.warning(
                "stopping with %s unredeemed (kept in the store, sent at next start)",
                self.core.unredeemed_amount,
            )
        if self.core.scrip_awaiting_deposit:
            log.warning(
                "stopping with %s scrip serials not confirmed deposited (sent again at next start)",
                self.core.scrip_awaiting_deposit,
            )
        if self.core.scrip_online_pending:
            log.warning(
                "stopping with %s on-line scrip payments the broker has not answered"
                " (their buyers resend them)",
                self.core.scrip_online_pending,
            )
        self.loop.stopping.set()

    def _owed(self) -> bool:
        """Paywords not yet redeemed, scrip not yet confirmed deposited or answered on-line."""
        core = self.core
        return bool(
            core.unredeemed_amount or core.scrip_awaiting_deposit or core.scrip_online_pending
        )

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then redeem and stop."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_requested.set)

        notifier = Notifier.from_environ()  # systemd readiness and watchdog, if asked

        async def stop_when_asked() -> None:
            await stop_requested.wait()
            notifier.stopping("redeeming what it holds")
            await self.shutdown()

        try:
            # The shutdown runs beside the loop: if it fails, the daemon stops with its error.
            await first_failure(
                self.loop.run(),
                {},
                alongside=[
                    stop_when_asked(),
                    notifier.serve(self.loop, f"vendor {self.core.account}"),
                ],
            )
        finally:
            await self.store.close()
            counters = self.counters
            log.info(
                "vendor %s stopped: %s payments, %s accepted this run (%s in scrip, %s)",
                self.core.account,
                counters.payments + counters.scrip_payments,
                counters.amount + counters.scrip_amount,
                counters.scrip_payments,
                counters.scrip_amount,
            )


async def _restore(core: VendorCore, store: VendorStore, now: float) -> None:
    """Put the certificate, the kept heads and every chain back into a fresh core."""
    certificate = await store.get("certificate")
    if certificate is not None:
        core.restore_certificate(certificate, now)
    receipts = await store.restore_heads(core.ledger_view)
    for record in await store.spent_scrip():
        core.restore_scrip(record, now)
    for chain in await store.chains():
        core.restore_chain(
            chain.commitment,
            chain.index,
            chain.word,
            chain.redeemed,
            now,
            receipt_seq=receipts.get(chain.commitment_id, 0),
        )
    for buyer, day, amount in await store.allowance_counts(day_of(now)):
        core.restore_allowance(buyer, day, amount)  # today(buyer), docs/SCHEMES.md 4.3
