"""The buyer: a wallet on disk and short-lived sessions that enroll, pay or query.

The wallet keeps the certificate and, per channel, the chain seed, the signed commitment
and the highest index spent. ``pay`` records the new index before the payword is
published, so a crash loses at most the paywords of the payment in flight; restarting
resumes the channel from the stored index (the vendor accepts the jump).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from agents.daemons.agent_store import AgentStore
from agents.daemons.wallet_store import WalletStore
from agents.runtime.datadir_lock import DataDirLock
from agents.runtime.keystore import create_identity, load_identity
from agents.runtime.loop import AgentLoop, Clock
from agents.runtime.mqtt import MqttLink, MqttSettings
from agents.runtime.private_files import make_private_dir
from protocol.buyer import BuyerCore
from protocol.endpoint import BrokerInfo
from protocol.errors import LocalProtocolError
from protocol.events import (
    BalanceReceived,
    BuyerEvent,
    CertificateReceived,
    ChannelOpened,
    InvoiceReceived,
    OfferReceived,
    PeerError,
    ReceiptReceived,
)
from protocol.messages import Balance, Invoice

T = TypeVar("T")
W = TypeVar("W")
KEY_FILE: Final = "agent.key"
STORE_FILE: Final = "wallet.db"


class BuyerError(Exception):
    """A buyer command could not finish (not enrolled, no offer, refused, timed out)."""


@dataclass
class PayResult:
    """What a ``pay`` session did."""

    payments: int
    units: int
    acknowledged: int
    seconds: float


class BuyerAgent:
    """A buyer core with its wallet, connected for the length of one command."""

    def __init__(
        self, core: BuyerCore, store: AgentStore, mqtt: MqttSettings, clock: Clock = time.time
    ) -> None:
        self.core = core
        self.store = store
        self.loop: AgentLoop[BuyerEvent] = AgentLoop(
            core, MqttLink(mqtt), self._persist, clock=clock, react=self._react
        )
        self._waiters: dict[asyncio.Future[Any], Callable[[BuyerEvent], None]] = {}
        self._stored_channels: dict[str, list[tuple[bytes, bytes, bytes, int, int]]] = {}

    @classmethod
    async def open(
        cls,
        directory: Path,
        account: str,
        broker: BrokerInfo,
        mqtt: MqttSettings,
        clock: Clock = time.time,
    ) -> BuyerAgent:
        """Load (or create) keys and the wallet."""
        make_private_dir(directory)
        lock = DataDirLock.acquire(directory, "buyer command")
        store = await WalletStore.open(directory / STORE_FILE, lock)
        try:
            key_path = directory / KEY_FILE
            identity = load_identity(key_path) if key_path.exists() else create_identity(key_path)
            core = BuyerCore(account, identity, broker)
            certificate = await store.get("certificate")
            if certificate is not None:
                core.restore_certificate(certificate, clock())
            await store.restore_heads(core.ledger_view)
            channels = await store.channels()
        except BaseException:
            await store.close()
            raise
        agent = cls(core, store, mqtt, clock)
        for channel in channels:
            agent._stored_channels.setdefault(channel.vendor, []).append(
                (
                    channel.commitment_id,
                    channel.seed,
                    channel.commitment,
                    channel.length,
                    channel.spent,
                )
            )
        return agent

    def _react(self, event: BuyerEvent, _now: float) -> None:
        if isinstance(event, OfferReceived):
            self._restore_channels(event.vendor)

    async def _persist(self, events: list[BuyerEvent]) -> None:
        await self.store.record(events)
        for event in events:
            for offer in list(self._waiters.values()):
                offer(event)

    def _restore_channels(self, vendor: str) -> None:
        for cid, seed, commitment, length, spent in self._stored_channels.pop(vendor, []):
            if cid not in self.core.channels:
                self.core.restore_channel(vendor, seed, commitment, length, spent)

    def expect(
        self,
        kind: type[W],
        matches: Callable[[W], bool] | None = None,
        *,
        refused: str | None = None,
    ) -> asyncio.Future[W]:
        """The next durable event of ``kind`` (that ``matches``); register before acting.

        With ``refused``, a refusal from a peer ends the wait as ``BuyerError(refused: …)``.
        """
        future: asyncio.Future[W] = asyncio.get_running_loop().create_future()

        def offer(event: BuyerEvent) -> None:
            if future.done():
                return
            if isinstance(event, kind) and (matches is None or matches(event)):
                future.set_result(event)
            elif refused is not None and isinstance(event, PeerError):
                future.set_exception(BuyerError(f"{refused}: {event.code}: {event.detail}"))

        self._waiters[future] = offer
        return future

    async def answer(self, future: asyncio.Future[W], timeout: float) -> W:  # noqa: ASYNC109
        """Wait for what ``expect`` registered; ``BuyerError`` after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError as exc:
            raise BuyerError(f"no answer within {timeout} s") from exc
        finally:
            self._waiters.pop(future, None)
            future.cancel()

    async def run(self, job: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:  # noqa: ASYNC109
        """Connect, run ``job``, wait for the publishes to be acknowledged, disconnect."""
        runner = asyncio.create_task(self.loop.run(), name="buyer-loop")
        try:
            async with asyncio.timeout(timeout):
                await self.loop.connected.wait()
            result = await job()
            await self.loop.drain()
        except TimeoutError as exc:
            raise BuyerError(f"could not reach the MQTT broker within {timeout} s") from exc
        finally:
            self.loop.stopping.set()
            with contextlib.suppress(Exception):
                await runner
            await self.store.close()
        return result

    # --- commands ------------------------------------------------------------------------------

    async def enroll(self, token: bytes, timeout: float = 15.0) -> int:  # noqa: ASYNC109
        """Enroll with the operator's token; returns the certificate serial."""
        if self.core.certified is not None:
            return self.core.certified.serial
        certified = self.expect(CertificateReceived, refused="enrollment refused")
        await self.loop.act(lambda now: self.core.enroll(token, now))
        return (await self.answer(certified, timeout)).serial

    async def _offer(self, vendor: str, timeout: float) -> None:  # noqa: ASYNC109
        if vendor in self.core.offers:
            return
        await self.answer(self.expect(OfferReceived, lambda e: e.vendor == vendor), timeout)

    async def _channel(self, vendor: str, units: int, length: int, timeout: float) -> bytes:  # noqa: ASYNC109
        for known, channel in self.core.channels.items():
            if channel.vendor == vendor and channel.remaining >= units:
                return known
        opened = self.core.open_channel  # persisted (the seed) before the commit goes out
        event = await self.loop.record(lambda now: opened(vendor, length, now))
        if not isinstance(event, ChannelOpened):
            raise BuyerError("the channel could not be opened")
        cid = event.commitment_id
        accepted = self.expect(
            ReceiptReceived,
            lambda e: e.commitment_id == cid,
            refused=f"{vendor} refused the commitment",
        )
        await self.answer(accepted, timeout)
        return cid

    async def pay(  # noqa: PLR0913 - the payment plan
        self,
        vendor: str,
        payments: int,
        units: int = 1,
        *,
        mixed: bool = False,
        length: int = 100_000,
        item: str = "",
        timeout: float = 30.0,  # noqa: ASYNC109
        rng: random.Random | None = None,
    ) -> PayResult:
        """Make ``payments`` payments of ``units`` (or a mix of 1..units) and wait for receipts."""
        if self.core.certified is None:
            raise BuyerError("not enrolled: run `micropay buyer enroll --token-file FILE` first")
        started = time.monotonic()
        await self._offer(vendor, timeout)
        rng = rng or random.Random()  # noqa: S311 - a payment mix, not a secret
        plan = [rng.randint(1, units) if mixed else units for _ in range(payments)]
        cid = await self._channel(vendor, sum(plan), max(length, sum(plan)), timeout)
        channel = self.core.channels[cid]
        for amount in plan:
            try:
                await self.loop.record(lambda now, a=amount: self.core.pay(cid, a, now, item))  # type: ignore[misc]
            except LocalProtocolError as exc:
                raise BuyerError(str(exc)) from exc
            # One payment at a time between the wallet and Mosquitto: a crash can then
            # lose at most the paywords of the payment in flight.
            if not await self.loop.drain(timeout):
                raise BuyerError(f"Mosquitto did not acknowledge a payment within {timeout} s")
        target = channel.spent
        if channel.acknowledged < target:
            receipt = self.expect(
                ReceiptReceived, lambda e: e.commitment_id == cid and e.index >= target
            )
            await self.answer(receipt, timeout)
        return PayResult(len(plan), sum(plan), channel.acknowledged, time.monotonic() - started)

    async def balance(self, timeout: float = 15.0) -> Balance:  # noqa: ASYNC109
        """The broker's view of this account."""
        answered = self.expect(BalanceReceived)
        await self.loop.act(self.core.query_balance)
        return (await self.answer(answered, timeout)).balance

    async def invoice(self, timeout: float = 15.0) -> Invoice:  # noqa: ASYNC109
        """The broker's invoice of the open period for this account."""
        answered = self.expect(InvoiceReceived)
        await self.loop.act(self.core.query_invoice)
        return (await self.answer(answered, timeout)).invoice
