"""Overspending beyond the credit limit, off-line across vendors and on-line."""

from __future__ import annotations

import time

import pytest

from protocol.events import ReceiptReceived
from protocol.vendor import VendorTerms
from tests.agents.harness import wait_until
from tests.attacks.rogue import AttackHarness, buyer_core, offered, rogue

QUICK_REDEEM = VendorTerms(redeem_interval=0.2)


def accepted(event: object, cid: bytes) -> bool:
    """The vendor's first receipt for a chain: it accepted the commitment."""
    return isinstance(event, ReceiptReceived) and event.commitment_id == cid


@pytest.mark.asyncio
async def test_overspending_across_vendors_is_bounded_and_revoked(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1", QUICK_REDEEM)
    vendor2 = await harness.start_vendor("vendor2", QUICK_REDEEM)
    core = await buyer_core(harness, "buyer1", credit_limit=100)
    assert core.certified is not None
    serial = core.certified.serial
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1", "vendor2")
        # Off-line, no vendor can see the other: each serves up to the whole limit.
        chains = {}
        for vendor in ("vendor1", "vendor2"):
            opened = core.open_channel(vendor, 10_000, time.time())
            assert opened.length == 100  # the wallet cannot even ask for more
            chains[vendor] = opened.commitment_id
            core.pay(opened.commitment_id, 80, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.counters.amount == vendor2.counters.amount == 80)

        # Both redeem; the broker sees 160 > 100, revokes, and the signed list reaches them.
        await wait_until(lambda: serial in vendor1.core.revoked and serial in vendor2.core.revoked)
        for vendor in ("vendor1", "vendor2"):
            core.pay(chains[vendor], 10, time.time())
        core.open_channel("vendor1", 5, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.loop.rejected == 2 and vendor2.loop.rejected == 1)
    assert vendor1.loop.rejections == {"payment": 1, "certificate": 1}
    assert vendor2.loop.rejections == {"payment": 1}
    assert vendor1.counters.amount == vendor2.counters.amount == 80
    # The vendors served in good faith and are paid; the broker's loss is bounded by the
    # limit at each vendor, and ends when the revocation list arrives.
    assert harness.credited("vendor1") + harness.credited("vendor2") == 160
    assert harness.debited("buyer1") == 160
    assert harness.daemon is not None
    assert serial in harness.daemon.service.core.revoked
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_vendor_refuses_chains_beyond_the_credit_limit(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1", credit_limit=100)
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1")
        first = core.open_channel("vendor1", 100, time.time()).commitment_id
        core.pay(first, 100, time.time())
        # A second chain while the first is still unredeemed: 200 > 100 at this vendor.
        second = core.open_channel("vendor1", 100, time.time()).commitment_id
        core.pay(second, 50, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.loop.rejected == 2)
    assert vendor1.loop.rejections == {"commitment": 1, "auth": 1}
    assert vendor1.counters.amount == 100
    await harness.redeem("vendor1")
    assert harness.credited("vendor1") == harness.debited("buyer1") == 100
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_on_line_vendor_serves_nothing_beyond_the_credit_limit(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    online = await harness.start_vendor("vendor2", VendorTerms(online=True))
    core = await buyer_core(harness, "buyer1", credit_limit=100)
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1", "vendor2")
        spent = core.open_channel("vendor1", 60, time.time()).commitment_id
        core.pay(spent, 60, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.counters.amount == 60)
        await harness.redeem("vendor1")  # the broker now knows of 60 spent
        # On-line, the vendor asks the broker before serving: 60 + 100 > 100 is refused.
        refused = core.open_channel("vendor2", 100, time.time()).commitment_id
        await buyer.flush()
        await wait_until(lambda: any("credit limit" in str(e) for e in buyer.events))
        core.pay(refused, 1, time.time())
        await buyer.flush()
        await wait_until(lambda: online.loop.rejected == 1)
        # 40 still fits: registered, then served.
        fits = core.open_channel("vendor2", 40, time.time()).commitment_id
        await buyer.flush()
        await wait_until(lambda: any(accepted(e, fits) for e in buyer.events))
        core.pay(fits, 40, time.time())
        await buyer.flush()
        await wait_until(lambda: online.counters.amount == 40)
    assert online.loop.rejections == {"auth": 1}
    await harness.redeem("vendor2")
    assert harness.debited("buyer1") == 100
    assert harness.credited("vendor1") + harness.credited("vendor2") == 100
    await harness.broker_serving("vendor2")
