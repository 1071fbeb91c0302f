"""The buyer: a wallet on disk and short-lived sessions that enroll, pay or query.

The wallet keeps the certificate and, per channel, the chain seed (sealed under the
agent's key store), the signed commitment and the spend reservation: no payword above it
has left. ``pay`` extends the reservation (a write every ``reserve_ahead`` units) before a
payword beyond it is published, keeps at most ``PAY_WINDOW`` units unacknowledged in
flight instead of waiting for each payment, and hands back what it reserved and did not
pay when the session ends. A crash costs the
reservation's unpaid units and the payments in flight; restarting resumes the channel
above the reservation, stepping up from the vendor's receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from agents.daemons.agent_keys import restore_broker_keys, settle_rekey
from agents.daemons.event_waiters import EventWaiters
from agents.daemons.wallet_store import WalletStore
from agents.runtime.datadir_lock import DataDirLock
from agents.runtime.keystore import create_identity, load_identity
from agents.runtime.loop import AgentLoop, Clock
from agents.runtime.mqtt import MqttSettings, open_link
from agents.runtime.private_files import make_private_dir
from agents.runtime.sealing import SeedSealer
from agents.runtime.supervision import AgentFailedError
from protocol import topics
from protocol.buyer import DEFAULT_RESERVE_AHEAD, BuyerCore
from protocol.buyer_allowance import ALLOWANCE_CORR, committed_today, offline_length
from protocol.buyer_channel import Channel
from protocol.buyer_rules import committed
from protocol.codec import decode_commitment, decode_signed
from protocol.endpoint import BrokerInfo
from protocol.errors import LocalProtocolError
from protocol.events import (
    AllowanceReceived,
    BalanceReceived,
    BuyerEvent,
    CertificateReceived,
    ChannelOpened,
    InvoiceReceived,
    MessageRejected,
    OfferReceived,
    PaymentRefused,
    PeerError,
    ReceiptReceived,
    RevocationsUpdated,
)
from protocol.messages import AllowanceGrant, Balance, Invoice
from protocol.money_rules import amount_for

T = TypeVar("T")
W = TypeVar("W")
KEY_FILE: Final = "agent.key"
STORE_FILE: Final = "wallet.db"
OFFER_WAIT: Final = 5.0
"""Seconds to wait for a vendor's offer: retained, it arrives right after subscribing."""
PAY_WINDOW: Final = 256
"""Units paid and not yet acknowledged by the vendor, at most, while ``pay`` runs."""
HAND_BACK_WAIT: Final = 2.0
"""Seconds a session that fails may spend making its reservations' hand-back durable."""
Refusal = Callable[[BuyerEvent], str | None]
"""What ends a wait early: the reason an event refuses the request, or ``None``."""


def _enrollment_refused(event: BuyerEvent) -> str | None:
    return (
        f"enrollment refused: {event.code}: {event.detail}"
        if isinstance(event, PeerError)
        else None
    )


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
        self, core: BuyerCore, store: WalletStore, mqtt: MqttSettings, clock: Clock = time.time
    ) -> None:
        self.core = core
        self.store = store
        self.loop: AgentLoop[BuyerEvent] = AgentLoop(
            core, open_link(mqtt), self._persist, clock=clock, react=self._react
        )
        self.waiters: EventWaiters[BuyerEvent] = EventWaiters(BuyerError)
        self._stored_channels: dict[str, list[tuple[bytes, bytes, bytes, int, int]]] = {}

    @classmethod
    async def open(  # noqa: PLR0913 - where the wallet is, who it is, and its settings
        cls,
        directory: Path,
        account: str,
        broker: BrokerInfo,
        mqtt: MqttSettings,
        clock: Clock = time.time,
        *,
        reserve_ahead: int = DEFAULT_RESERVE_AHEAD,
        vendors: Sequence[str] | None = None,
    ) -> BuyerAgent:
        """Load (or create) keys, then the wallet they own; ``reserve_ahead``: see ``BuyerCore``.

        The keys come first: the wallet opens only for them, its seeds sealed under them.
        ``vendors``: read only these vendors' offers. The session then starts clean, since
        one kept from an earlier command would still hold that command's subscriptions;
        nothing is lost with it, as a paying session resends its commits (11.7).
        """
        if vendors is not None:
            mqtt = dataclasses.replace(mqtt, clean=True)
        make_private_dir(directory)
        lock = DataDirLock.acquire(directory, "buyer command")
        try:
            settle_rekey(directory, directory / STORE_FILE)  # an interrupted key rotation
            key_path = directory / KEY_FILE
            identity = load_identity(key_path) if key_path.exists() else create_identity(key_path)
            sealer = SeedSealer(identity, account)
        except BaseException:
            lock.release()
            raise
        store = await WalletStore.open(directory / STORE_FILE, lock, owner=identity, sealer=sealer)
        try:
            core = BuyerCore(
                account, identity, broker, reserve_ahead=reserve_ahead, offers_from=vendors
            )
            await restore_broker_keys(core, store)  # key rotation: the broker's new key
            certificate = await store.get("certificate")
            if certificate is not None:
                core.restore_certificate(certificate, clock())
            await store.restore_heads(core.ledger_view)
            channels = await store.channels()
            await _restore_scrip(core, store, clock())
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
        self.waiters.deliver(events)

    def _restore_channels(self, vendor: str) -> None:
        for cid, seed, commitment, length, reserved in self._stored_channels.pop(vendor, []):
            if cid not in self.core.channels:
                self.core.restore_channel(vendor, seed, commitment, length, reserved)

    async def run(self, job: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:  # noqa: ASYNC109
        """Connect, run ``job``, wait for the publishes to be acknowledged, disconnect.

        A loop that stops (Mosquitto refused our credentials) ends the command at once.
        However the job ends (Ctrl-C included), the reservations it did not pay are
        handed back while the loop still runs.
        """
        runner = asyncio.create_task(self.loop.run(), name="buyer-loop")
        finished = False
        try:
            await self._beside(runner, self._connected_or_refused(), timeout)
            if self.core.scrip_pending or self.core.mints:  # written before a crash
                await self.loop.act(self.core.resume_scrip)
            result = await self._beside(runner, job(), None)
            finished = True
        finally:
            if not runner.done():
                await self._hand_back()
                await self.loop.drain(10.0 if finished else HAND_BACK_WAIT)
            self.loop.stopping.set()
            with contextlib.suppress(Exception):
                await runner
            await self.store.close()
        return result

    async def _hand_back(self) -> None:
        """Release what each chain reserved beyond what it paid (``BuyerCore.release``).

        Best effort: a wallet that keeps a reservation only loses its unpaid units.
        """
        held = [c.id for c in self.core.channels.values() if c.reserved > c.spent]
        with contextlib.suppress(Exception):
            for cid in held:
                await self.loop.record(lambda _now, cid=cid: self.core.release(cid))  # type: ignore[misc]

    async def _connected_or_refused(self) -> None:
        """Connected; or ``BuyerError`` at once if the first attempt failed (not retried)."""
        connected = asyncio.ensure_future(self.loop.connected.wait())
        failed = asyncio.ensure_future(self.loop.first_attempt_failed.wait())
        try:
            await asyncio.wait({connected, failed}, return_when="FIRST_COMPLETED")
        finally:
            connected.cancel()
            failed.cancel()
        if not self.loop.connected.is_set():
            settings = self.loop.link.settings
            raise BuyerError(
                f"could not reach the MQTT broker at {settings.host}:{settings.port}"
                f" ({self.loop.link_error}): is Mosquitto running there?"
            )

    async def _beside(
        self,
        runner: asyncio.Task[None],
        work: Awaitable[T],
        connecting: float | None,
    ) -> T:
        """``work``, unless the loop stops first; ``connecting``: bounded, to connect."""
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait(
                {task, runner}, timeout=connecting, return_when="FIRST_COMPLETED"
            )
        except asyncio.CancelledError:
            task.cancel()  # Ctrl-C: the work stops before its reservations are handed back
            raise
        if task in done:
            return task.result()
        task.cancel()
        if runner in done:
            try:
                runner.result()
            except AgentFailedError as exc:
                raise BuyerError(str(exc)) from exc
            raise BuyerError("the MQTT connection closed")
        settings = self.loop.link.settings
        why = f" ({self.loop.link_error})" if self.loop.link_error else ""
        raise BuyerError(
            f"could not reach the MQTT broker at {settings.host}:{settings.port}"
            f" within {connecting:g} s{why}"
        )

    # --- commands ------------------------------------------------------------------------------

    async def enroll(self, token: bytes, timeout: float = 15.0) -> int:  # noqa: ASYNC109
        """Enroll with the operator's token; returns the certificate serial."""
        if self.core.certified is not None:
            return self.core.certified.serial
        certified = self.waiters.expect(CertificateReceived, refused=_enrollment_refused)
        await self.loop.act(lambda now: self.core.enroll(token, now))
        return (await self.waiters.answer(certified, timeout)).serial

    async def offer(self, vendor: str, timeout: float) -> None:  # noqa: ASYNC109
        """The vendor's retained offer, or why there is none, within a few seconds."""
        if vendor in self.core.offers:
            return
        topic = topics.public(vendor, "offer")

        def refused(event: BuyerEvent) -> str | None:
            if isinstance(event, MessageRejected) and event.topic == topic:
                return f"the offer of vendor {vendor!r} was refused: {event.error}"
            return None

        wait = min(timeout, OFFER_WAIT)
        offered = self.waiters.expect(OfferReceived, lambda e: e.vendor == vendor, refused=refused)
        silence = f"no offer from vendor {vendor!r} within {wait:g} s: is it running and enrolled?"
        await self.waiters.answer(offered, wait, silence)

    async def _channel(self, vendor: str, units: int, length: int, timeout: float) -> bytes:  # noqa: ASYNC109
        mine = [c for c in self.core.channels.values() if c.vendor == vendor]
        for channel in mine:
            if channel.payable(units, self.loop.clock()) and channel.acknowledged < 0:
                # Restored from the wallet: the vendor's receipt says how far it was spent.
                await self._accepted(vendor, channel.id, "the chain", timeout, self.core.resume)
            if channel.payable(units, self.loop.clock()):
                return channel.id
        # As long as the vendor's credit check allows (``refusal`` made sure ``units`` fit).
        now = self.loop.clock()
        limit = self.core.certified.credit_limit if self.core.certified else 0
        offer = self.core.offers[vendor].offer
        room = (limit - committed(mine, now)) // offer.unit_value
        length = min(length, room, offer.max_length)
        if offer.allowance:  # MiniPay: a chain within today's grant needs no broker
            grant, _ = await self.allowance(timeout)
            used = committed_today(mine, vendor, now)
            length = min(length, offline_length(grant, used, offer.unit_value, units))
        opened = self.core.open_channel  # persisted (the seed) before the commit goes out
        try:
            event = await self.loop.record(lambda now: opened(vendor, length, now))
        except LocalProtocolError as exc:
            raise BuyerError(str(exc)) from exc
        if not isinstance(event, ChannelOpened):
            raise BuyerError("the channel could not be opened")
        await self._accepted(vendor, event.commitment_id, "the new chain", timeout)
        return event.commitment_id

    async def _accepted(
        self,
        vendor: str,
        cid: bytes,
        what: str,
        timeout: float,  # noqa: ASYNC109
        commit: Callable[[bytes, float], None] | None = None,
    ) -> None:
        """Wait for the vendor's receipt for a commit (sending it with ``commit``)."""

        def refused(event: BuyerEvent) -> str | None:
            if isinstance(event, PeerError) and event.peer == vendor and not event.corr:
                return self._refused(vendor, what, event.detail, event.code)
            return self._revoked_now(event)

        accepted = self.waiters.expect(
            ReceiptReceived, lambda e: e.commitment_id == cid, refused=refused
        )
        if commit is not None:
            await self.loop.act(lambda now: commit(cid, now))
        await self.waiters.answer(
            accepted, timeout, f"{vendor} did not accept {what} in {timeout:g} s"
        )

    def _refused(self, vendor: str, what: str, detail: str, code: str) -> str:
        """A vendor's refusal in words, and the reason behind it when it is a revocation."""
        certified = self.core.certified
        if certified is not None and certified.serial in self.core.revoked:
            return (
                f"your certificate (serial {certified.serial}) is revoked: {vendor} refused"
                f" {what} ({detail}); the broker's operator can say why"
            )
        return f"{vendor} refused {what}: {detail} ({code})"

    def _revoked_now(self, event: BuyerEvent) -> str | None:
        """A revocation list naming this wallet's certificate ends any wait with a vendor."""
        serial = self.core.certified.serial if self.core.certified else 0
        if isinstance(event, RevocationsUpdated) and serial in event.serials:
            return f"your certificate (serial {serial}) was revoked just now"
        return None

    async def paid(self) -> int:
        """What this wallet has paid in all, at every vendor (redeemed by now or not).

        A reservation a crashed session left counts: its units can never be paid again.
        """
        total = 0
        for channel in await self.store.channels():
            commitment = decode_commitment(decode_signed(channel.commitment).body)
            total += amount_for(channel.spent, commitment.unit_value)
        return total

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
        await self.offer(vendor, timeout)
        rng = rng or random.Random()  # noqa: S311 - a payment mix, not a secret
        plan = [rng.randint(1, units) if mixed else units for _ in range(payments)]
        refusal = self.core.refusal(vendor, plan, item, await self.paid(), self.loop.clock())
        if refusal is not None:
            raise BuyerError(refusal)
        cid = await self._channel(vendor, sum(plan), max(length, sum(plan)), timeout)
        channel = self.core.channels[cid]
        target = channel.spent + sum(plan)

        def refused(event: BuyerEvent) -> str | None:
            if isinstance(event, PaymentRefused) and event.commitment_id == cid:
                what = f"the payment at index {event.index}"
                return self._refused(vendor, what, event.detail, event.code)
            return self._revoked_now(event)

        done = self.waiters.expect(
            ReceiptReceived, lambda e: e.commitment_id == cid and e.index >= target, refused=refused
        )
        try:
            await self._pay_plan(cid, plan, item, timeout, done)
        except BaseException:
            self.waiters.forget(done)
            raise
        silence = (
            f"{vendor} did not acknowledge the payments within {timeout:g} s"
            f" (acknowledged up to {max(channel.acknowledged, 0)} of {target})"
        )
        await self.waiters.answer(done, timeout, silence)
        return PayResult(len(plan), sum(plan), channel.acknowledged, time.monotonic() - started)

    async def _pay_plan(
        self,
        cid: bytes,
        plan: list[int],
        item: str,
        timeout: float,  # noqa: ASYNC109
        done: asyncio.Future[ReceiptReceived],
    ) -> None:
        """Pay without waiting for each payment, within ``PAY_WINDOW`` of the receipts.

        Stops at the vendor's refusal (``done`` then says why).
        """
        channel = self.core.channels[cid]
        for amount in plan:
            if done.done() or not await self._room(channel, amount, timeout, done):
                return
            try:
                await self.loop.record(lambda now, a=amount: self.core.pay(cid, a, now, item))  # type: ignore[misc]
            except LocalProtocolError as exc:
                raise BuyerError(str(exc)) from exc

    async def _room(
        self,
        channel: Channel,
        units: int,
        timeout: float,  # noqa: ASYNC109
        done: asyncio.Future[ReceiptReceived],
    ) -> bool:
        """Wait until ``units`` more fit in the window; ``False`` if ``done`` came first.

        A payment larger than the window waits until everything before it is acknowledged;
        the first on a restored chain goes at once, carrying what a crash left unpaid.
        """
        need = min(channel.spent, channel.spent + units - PAY_WINDOW)
        if channel.acknowledged >= need or channel.resumed:
            return True
        cid = channel.id
        receipt = self.waiters.expect(
            ReceiptReceived, lambda e: e.commitment_id == cid and e.index >= need
        )
        try:
            finished, _ = await asyncio.wait(
                {receipt, done}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            self.waiters.forget(receipt)
        if not finished:
            raise BuyerError(
                f"{channel.vendor} did not acknowledge index {need} within {timeout:g} s"
                f" (acknowledged up to {max(channel.acknowledged, 0)})"
            )
        return receipt in finished

    async def balance(self, timeout: float = 15.0) -> Balance:  # noqa: ASYNC109
        """The broker's view of this account."""
        answered = self.waiters.expect(BalanceReceived)
        await self.loop.act(self.core.query_balance)
        return (await self.waiters.answer(answered, timeout)).balance

    async def allowance(self, timeout: float = 15.0) -> tuple[AllowanceGrant | None, str]:  # noqa: ASYNC109
        """Today's grant (docs/SCHEMES.md §4), or ``None`` and why there is none."""
        core = self.core
        now = self.loop.clock()
        if core.allowance.known(now):
            grant = core.allowance.grant(now)
            return grant, "" if grant else "the broker gave no grant today"

        def refused(event: BuyerEvent) -> str | None:
            if isinstance(event, PeerError) and event.corr == ALLOWANCE_CORR:
                return event.detail
            return None

        answered = self.waiters.expect(AllowanceReceived, refused=refused)
        await self.loop.act(core.query_allowance)
        try:
            grant = (await self.waiters.answer(answered, timeout)).grant
        except BuyerError as exc:
            return None, str(exc)
        return grant, "" if grant else "no daily allowance is set for this account"

    def committed_today(self, vendor: str) -> int:
        """What this wallet committed to ``vendor`` in chains that end today."""
        return committed_today(self.core.channels.values(), vendor, self.loop.clock())

    async def invoice(self, timeout: float = 15.0) -> Invoice:  # noqa: ASYNC109
        """The broker's invoice of the open period for this account."""
        answered = self.waiters.expect(InvoiceReceived)
        await self.loop.act(self.core.query_invoice)
        return (await self.waiters.answer(answered, timeout)).invoice


async def _restore_scrip(core: BuyerCore, store: WalletStore, now: float) -> None:
    """Put the wallet's scrip, secrets, unanswered mints and payments back into a fresh core."""
    held, pending = await store.scrip()
    for scrip in held:
        core.restore_scrip(scrip.scrip, scrip.secret)
    for serial, item, price in pending:
        core.restore_scrip_payment(serial, item, price, now)
    for request, vendor, value in await store.mint_orders(int(now * 1000)):
        core.restore_mint(request, vendor, value, now)
