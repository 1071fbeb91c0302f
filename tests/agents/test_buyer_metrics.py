"""``buyer pay``'s metrics, scraped over HTTP while a real wallet pays a real vendor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.buyer_metrics import buyer_metrics
from agents.runtime.metrics_server import start_metrics
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker
from tests.agents.harness import Harness
from tests.agents.test_errors_by_hand import micropay
from tests.agents.test_metrics import Samples, scrape, value

UNIT_VALUE = 3
LIMIT = 10**6


@pytest_asyncio.fixture
async def shop(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[Harness]:
    """A broker, vendor1 at 3 a unit (redeeming only on the way out), buyer1 enrolled."""
    harness = Harness(tmp_path, mosquitto)
    await harness.start_broker()
    await harness.start_vendor("vendor1", VendorTerms(unit_value=UNIT_VALUE, redeem_interval=3600))
    await harness.enroll_buyer("buyer1")
    try:
        yield harness
    finally:
        await harness.stop()


async def session(buyer: BuyerAgent, plans: list[tuple[int, int]]) -> tuple[Samples, Samples]:
    """Pay each (payments, units) plan; scrapes after the first plan and after the last."""
    registry = CollectorRegistry(auto_describe=False)
    await buyer_metrics(buyer, registry)
    served = start_metrics(registry, "127.0.0.1", 0)
    try:

        async def job() -> tuple[Samples, Samples]:
            scrapes = []
            for payments, units in plans:
                await buyer.pay("vendor1", payments, units)
                scrapes.append(await asyncio.to_thread(scrape, served.url))
            return scrapes[0], scrapes[-1]

        return await buyer.run(job)
    finally:
        served.close()


@pytest.mark.asyncio
async def test_payments_receipts_and_credit_as_scraped(shop: Harness) -> None:
    """Counters equal the payments made; each payment's receipt is timed once; credit left."""
    first, last = await session(await shop.buyer("buyer1"), [(10, 2), (5, 3)])
    assert value(first, "micropay_buyer_payments_total") == 10
    assert value(first, "micropay_buyer_receipt_latency_seconds_count") == 10
    assert value(last, "micropay_buyer_payments_total") == 15
    assert value(last, "micropay_buyer_units_total") == 10 * 2 + 5 * 3
    assert value(last, "micropay_buyer_amount_total") == 35 * UNIT_VALUE
    assert value(last, "micropay_buyer_receipt_latency_seconds_count") == 15
    assert 0 < value(last, "micropay_buyer_receipt_latency_seconds_sum") < 15 * 5
    assert value(last, "micropay_buyer_chains_open") == 1
    assert value(last, "micropay_buyer_credit_remaining") == LIMIT - 35 * UNIT_VALUE
    assert value(last, "micropay_buyer_mqtt_connected") == 1
    assert value(last, "micropay_buyer_mqtt_messages_sent_total", to="peer") >= 15
    assert value(last, "micropay_buyer_store_commit_seconds_count") > 0
    vendor = shop.vendors["vendor1"].core
    assert sum(chain.index for chain in vendor.chains.values()) == 35

    # The next command resumes the stored chain: it counts only its own payments, and the
    # credit left is what the wallet paid in all.
    _, again = await session(await shop.buyer("buyer1"), [(4, 5)])
    assert value(again, "micropay_buyer_payments_total") == 4
    assert value(again, "micropay_buyer_units_total") == 20
    assert value(again, "micropay_buyer_receipt_latency_seconds_count") == 4
    assert value(again, "micropay_buyer_credit_remaining") == LIMIT - 55 * UNIT_VALUE
    assert value(again, "micropay_buyer_chains_open") == 1


@pytest.mark.asyncio
async def test_buyer_pay_takes_the_metrics_flags(
    shop: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--metrics-port`` on ``buyer pay``: a busy port is one clear line, before paying."""
    monkeypatch.setenv("MICROPAY_MQTT_PASSWORD", "pw-buyer1")
    registry = CollectorRegistry(auto_describe=False)
    busy = start_metrics(registry, "127.0.0.1", 0)
    try:
        port = str(busy.port)
        code, out, err = await micropay(shop, "buyer", "pay", "vendor1", "--metrics-port", port)
    finally:
        busy.close()
    assert code == 1
    assert out == ""
    assert err.strip() == (
        f"micropay: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"
    )
    assert not shop.vendors["vendor1"].core.chains  # stopped before it committed a chain
    code, out, err = await micropay(shop, "buyer", "pay", "vendor1", "--metrics-port", "0")
    assert code == 0, err
    assert '"payments": 1' in out
