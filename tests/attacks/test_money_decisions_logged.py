"""Silent money decisions: the broker revoked an overspending buyer and logged nothing.

Every broker decision about money or identity is one log line naming the accounts, the
commitment and the amounts, ending with the ledger sequence number that holds it, so an
operator can alert on it and find the event.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time

import pytest

from protocol.vendor import VendorTerms
from tests.agents.harness import wait_until
from tests.attacks.rogue import AttackHarness, buyer_core, offered, rogue

QUICK_REDEEM = VendorTerms(redeem_interval=0.2)
TYPE_OF_LINE = {
    "account opened": "account-opened",
    "enrolled": "certificate-issued",
    "commitment registered": "commitment-registered",
    "redeemed": "paywords-redeemed",
    "credit limit exceeded": "credit-limit-exceeded",
    "revoked": "certificate-revoked",
}


@pytest.mark.asyncio
async def test_every_money_and_identity_decision_is_one_log_line_with_its_ledger_seq(
    harness: AttackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="micropay.broker")
    vendor1 = await harness.start_vendor("vendor1", QUICK_REDEEM)
    vendor2 = await harness.start_vendor("vendor2", QUICK_REDEEM)
    core = await buyer_core(harness, "buyer1", credit_limit=100)
    assert core.certified is not None
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1", "vendor2")
        for vendor in ("vendor1", "vendor2"):
            opened = core.open_channel(vendor, 100, time.time())
            core.pay(opened.commitment_id, 80, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.counters.amount == vendor2.counters.amount == 80)
        await wait_until(lambda: harness.debited("buyer1") == 160)
        await wait_until(lambda: any("revoked: buyer1" in r.message for r in caplog.records))
    await harness.stop_broker()

    lines = [r for r in caplog.records if r.name == "micropay.broker"]
    messages = [r.getMessage() for r in lines]
    ledger = sqlite3.connect(harness.root / "broker" / "ledger.db")
    types = dict(ledger.execute("SELECT seq, type FROM events").fetchall())
    seen: dict[str, list[str]] = {}
    for message in messages:
        match = re.fullmatch(r"([a-z ]+): (.*) seq=(\d+)", message)
        if match is None or match[1] not in TYPE_OF_LINE:
            continue
        assert types[int(match[3])] == TYPE_OF_LINE[match[1]], message
        seen.setdefault(match[1], []).append(match[2])
    assert set(seen) == set(TYPE_OF_LINE)
    assert any(text.startswith("buyer1 certificate=") for text in seen["enrolled"])
    assert any("credit_limit=100" in text for text in seen["account opened"])
    amounts = [re.search(r"amount=(\d+)", text) for text in seen["redeemed"]]
    assert [int(found[1]) for found in amounts if found] == [80, 80]
    assert seen["credit limit exceeded"] == ["buyer=buyer1 exposure=160 limit=100"]
    assert seen["revoked"] == [
        f"buyer1 certificate={core.certified.serial} reason='credit limit exceeded'"
    ]
    warnings = {r.getMessage().split(":")[0] for r in lines if r.levelno == logging.WARNING}
    assert {"credit limit exceeded", "revoked"} <= warnings
