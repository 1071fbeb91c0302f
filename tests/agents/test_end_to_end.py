"""Enroll, commit, pay 1,000 times, redeem, close the period and audit: over real Mosquitto."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from agents.daemons.broker_daemon import BrokerDaemon
from agents.daemons.broker_files import init_broker
from agents.daemons.broker_service import BrokerService
from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.operator_client import operator_request
from agents.daemons.operator_protocol import AccountOpened, ClosePeriod, OpenAccount, PeriodClosed
from agents.daemons.vendor_agent import VendorAgent
from broker_ledger.audit import LedgerAudit
from protocol.messages import OfferItem
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling a core's state
            await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_pay_a_thousand_times_redeem_close_and_audit(
    tmp_path: Path, mosquitto: Broker
) -> None:
    info = await init_broker(tmp_path / "broker", "broker")
    service = await BrokerService.open(tmp_path / "broker")
    daemon = BrokerDaemon(service, mosquitto.user("broker"))
    broker_task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.loop.connected.wait(), 10)

    opened = await operator_request(
        tmp_path / "broker",
        OpenAccount(account="vendor1", role="vendor", credit_limit=0),
    )
    assert isinstance(opened, AccountOpened), opened
    terms = VendorTerms(unit_value=2, max_jump=20, items=(OfferItem("article", 4),))
    vendor = await VendorAgent.open(
        tmp_path / "vendor1", "vendor1", info, terms, mosquitto.user("vendor1")
    )
    vendor.token = bytes.fromhex(opened.token)
    vendor_task = asyncio.create_task(vendor.run())
    await wait_until(lambda: bool(vendor.core.certificate))

    opened = await operator_request(
        tmp_path / "broker",
        OpenAccount(account="buyer1", role="buyer", credit_limit=100_000),
    )
    assert isinstance(opened, AccountOpened), opened
    buyer = await BuyerAgent.open(tmp_path / "buyer1", "buyer1", info, mosquitto.user("buyer1"))
    token = bytes.fromhex(opened.token)
    serial = await buyer.run(lambda: buyer.enroll(token))
    assert serial > 0

    buyer = await BuyerAgent.open(tmp_path / "buyer1", "buyer1", info, mosquitto.user("buyer1"))
    result = await buyer.run(
        lambda: buyer.pay("vendor1", 1000, 5, mixed=True, rng=random.Random(4), length=10_000),
        timeout=120,
    )
    assert result.payments == 1000
    assert result.acknowledged == result.units
    paid = result.units * terms.unit_value

    await vendor.shutdown()
    await asyncio.wait_for(vendor_task, 20)
    totals = service.core.totals
    assert totals.credited["vendor1"] == totals.debited["buyer1"] == paid

    buyer = await BuyerAgent.open(tmp_path / "buyer1", "buyer1", info, mosquitto.user("buyer1"))
    balance = await buyer.run(buyer.balance)
    assert balance.debited == paid

    closed = await operator_request(
        tmp_path / "broker",
        ClosePeriod(period="2026-11", fee_basis_points=100),
    )
    assert isinstance(closed, PeriodClosed), closed
    assert closed.summary.debited == paid

    daemon.loop.stopping.set()
    await asyncio.wait_for(broker_task, 20)
    report = LedgerAudit(tmp_path / "broker" / "ledger.db", info.sign_key).run()
    assert report.ok, report.findings
    assert report.debited == paid
    assert report.periods == 1
    assert report.unsigned_tail == 0
