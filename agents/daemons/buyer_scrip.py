"""The buyer's scrip commands: buy scrip from the broker, pay with it, say what is held.

Each runs inside ``BuyerAgent.run`` (connected, the wallet open). Payments go one at a
time, each written to the wallet before it leaves and waited for: the vendor's answer
carries the change the next payment spends. When the wallet holds no scrip for the vendor
that covers the price, it buys some first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from agents.daemons.buyer_agent import BuyerAgent, BuyerError
from protocol.errors import LocalProtocolError
from protocol.events import (
    BuyerEvent,
    MessageRejected,
    PeerError,
    ScripPaymentRefused,
    ScripReceived,
    ScripSettled,
)

DEFAULT_MINT = 1_000
"""Minor units bought when the wallet holds too little for a vendor: several payments' worth."""


@dataclass
class ScripPayResult:
    """What a scrip ``pay`` session did."""

    payments: int
    paid: int
    minted: int
    held: int
    seconds: float


async def mint(agent: BuyerAgent, vendor: str, value: int, timeout: float) -> ScripReceived:  # noqa: ASYNC109
    """Buy scrip worth ``value`` at ``vendor``; the wallet keeps it and its secret, sealed.

    The order is written to the wallet before it is sent: should this process die before
    the answer is stored, the next command asks again with the same request id, and the
    broker answers with the same scrip (it reserved the value once).
    """
    core = agent.core
    if core.certified is None:
        raise BuyerError("not enrolled: run `micropay buyer enroll --token-file FILE` first")
    # The broker mints only for an enrolled vendor, and a vendor offers only once enrolled.
    await agent.offer(vendor, timeout)
    if not core.offers[vendor].offer.scrip:
        raise BuyerError(f"vendor {vendor!r} does not take scrip: its offer says so (--scrip)")
    asked: list[bytes] = []
    broker = core.broker.id

    def refused(event: BuyerEvent) -> str | None:
        if isinstance(event, PeerError) and event.peer == broker and event.corr in asked:
            return f"the broker did not mint: {event.detail} ({event.code})"
        if isinstance(event, MessageRejected) and event.sender == broker and asked:
            return f"the broker's scrip was refused: {event.error}"
        return None

    minted = agent.waiters.expect(ScripReceived, lambda e: e.request in asked, refused=refused)

    def ask(now: float) -> BuyerEvent:
        try:
            ordered = core.mint(vendor, value, now)
        except LocalProtocolError as exc:
            agent.waiters.forget(minted)
            raise BuyerError(str(exc)) from exc
        asked.append(ordered.request)
        return ordered

    await agent.loop.record(ask)  # the order is in the wallet before the scrip? leaves
    silence = f"the broker did not answer the mint within {timeout:g} s: is it running?"
    return await agent.waiters.answer(minted, timeout, silence)


async def pay_with_scrip(  # noqa: PLR0913 - the payment plan
    agent: BuyerAgent,
    vendor: str,
    payments: int,
    price: int,
    *,
    item: str = "",
    mint_value: int = DEFAULT_MINT,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> ScripPayResult:
    """Pay ``price`` to ``vendor`` ``payments`` times with scrip, buying more when short."""
    core = agent.core
    started = time.monotonic()
    await agent.offer(vendor, timeout)
    minted = paid = 0
    for _ in range(payments):
        if not [v for v in core.scrip_value(vendor, agent.loop.clock()) if v >= price]:
            bought = await mint(agent, vendor, max(mint_value, price), timeout)
            minted += bought.value
        paid += await _pay_once(agent, vendor, price, item, timeout)
    held = sum(core.scrip_value(vendor, agent.loop.clock()))
    return ScripPayResult(payments, paid, minted, held, time.monotonic() - started)


async def _pay_once(agent: BuyerAgent, vendor: str, price: int, item: str, timeout: float) -> int:  # noqa: ASYNC109
    """One payment, written before it leaves; returns the price once the vendor took it."""
    core = agent.core
    serials: list[int] = []

    def refused(event: BuyerEvent) -> str | None:
        if isinstance(event, ScripPaymentRefused) and event.serial in serials:
            return f"{vendor} refused the scrip payment: {event.detail} ({event.code})"
        return None

    settled = agent.waiters.expect(
        ScripSettled, lambda e: e.serial in serials and e.vendor == vendor, refused=refused
    )

    def pay(now: float) -> BuyerEvent:
        sent = core.pay_scrip(vendor, price, now, item)
        serials.append(sent.serial)
        return sent

    try:
        await agent.loop.record(pay)
    except LocalProtocolError as exc:
        agent.waiters.forget(settled)
        raise BuyerError(str(exc)) from exc
    done = await agent.waiters.answer(
        settled, timeout, f"{vendor} did not answer the scrip payment within {timeout:g} s"
    )
    if done.change_refused:
        raise BuyerError(f"{vendor} took {done.price} but sent bad change: {done.change_refused}")
    return done.price
