"""Scrip end to end over a real Mosquitto: mint, pay with change, deposit, `micropay audit`.

The broker and vendor daemons and the wallet run as they do in production, each with its
own store; the audit is the command an auditor runs on the broker's ledger file.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agents.daemons.buyer_scrip import pay_with_scrip
from protocol.events import ScripAccepted, VendorEvent
from protocol.messages import OfferItem
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker
from tests.agents.harness import Harness, wait_until

ARTICLE = OfferItem("article", 30)
OFFLINE = VendorTerms(items=(ARTICLE,), scrip=True, redeem_interval=0.3)
ONLINE = VendorTerms(items=(ARTICLE,), scrip=True, scrip_online=True)
CHAINS = VendorTerms(unit_value=2, items=(OfferItem("minute", 4),))


def audit(root: Path) -> dict[str, Any]:
    """`micropay audit --json` on the broker's ledger, trusting its published key."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            *("-m", "agents.cli.main", "audit", str(root / "broker" / "ledger.db"), "--json"),
            *("--broker-key", f"@{root / 'broker' / 'broker.pub.json'}"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def stream(root: Path, name: str) -> list[str]:
    """The event types of one ledger stream, in order."""
    path = root / "broker" / "ledger.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        sql = "SELECT type FROM event_log WHERE stream = ? ORDER BY version"
        return [str(kind) for (kind,) in db.execute(sql, (name,))]


async def started(harness: Harness, vendors: dict[str, VendorTerms]) -> None:
    await harness.start_broker()
    for name, terms in vendors.items():
        await harness.start_vendor(name, terms)
    await harness.enroll_buyer("buyer1")


def assert_balanced(report: dict[str, Any], scrip: dict[str, int]) -> None:
    assert report["ok"], report["findings"]
    for check in ("scrip-conservation", "scrip-serials", "scrip-arithmetic", "scrip-limits"):
        assert report["checks"][check], check
    assert report["checks"]["debits-equal-credits"]
    assert {k: report["scrip"][k] for k in scrip} == scrip
    s = report["scrip"]
    assert s["minted"] == s["credited"] + s["returned"] + s["outstanding"]


@pytest.mark.asyncio
async def test_scrip_paid_with_change_is_deposited_and_the_audit_balances(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await started(harness, {"vendor1": OFFLINE})
    buyer = await harness.buyer("buyer1")
    result = await buyer.run(
        lambda: pay_with_scrip(buyer, "vendor1", 4, 30, item="article", mint_value=100)
    )
    # 100 pays 30, 30, 30 with change 70, 40, 10; the fourth payment buys 100 more.
    assert (result.payments, result.paid, result.minted, result.held) == (4, 120, 200, 80)
    vendor = harness.vendors["vendor1"]
    assert vendor.counters.scrip_payments == 4
    await wait_until(lambda: vendor.core.scrip_awaiting_deposit == 0)

    wallet = await harness.buyer("buyer1")
    balance = await wallet.run(wallet.balance)
    assert (balance.debited, balance.reserved) == (120, 80)  # the outstanding scrip is reserved
    await harness.stop()

    report = audit(tmp_path)
    assert_balanced(
        report, {"serials": 2, "minted": 200, "credited": 120, "returned": 0, "outstanding": 80}
    )
    assert report["debited"] == report["credited"] == 120
    assert stream(tmp_path, "scrip:1")[0] == "scrip-minted"
    assert "scrip-deposited" in stream(tmp_path, "scrip:2")


@pytest.mark.asyncio
async def test_online_every_payment_is_deposited_before_it_is_served(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await started(harness, {"vendor1": ONLINE})
    vendor = harness.vendors["vendor1"]
    durable = vendor.loop.persist
    seen: list[tuple[int, list[str]]] = []

    async def served(events: list[VendorEvent]) -> None:
        """What the broker's stream holds when the vendor records a payment it will serve."""
        accepted = [e for e in events if isinstance(e, ScripAccepted)]
        seen.extend((e.generation, stream(tmp_path, f"scrip:{e.serial}")) for e in accepted)
        await durable(events)

    vendor.loop.persist = served
    buyer = await harness.buyer("buyer1")
    result = await buyer.run(lambda: pay_with_scrip(buyer, "vendor1", 3, 30, mint_value=100))
    assert (result.payments, result.paid, result.held) == (3, 90, 10)
    assert vendor.core.scrip_awaiting_deposit == 0  # nothing left to deposit: it was, first
    await harness.stop()

    assert [generation for generation, _ in seen] == [0, 1, 2]
    for generation, events in seen:  # the deposit of each payment is in the ledger already
        assert events == ["scrip-minted"] + ["scrip-deposited"] * (generation + 1)
    assert stream(tmp_path, "scrip:1") == ["scrip-minted"] + ["scrip-deposited"] * 3
    report = audit(tmp_path)
    assert_balanced(report, {"serials": 1, "minted": 100, "credited": 90, "outstanding": 10})


@pytest.mark.asyncio
async def test_paywords_and_scrip_from_one_buyer_balance_in_one_audit(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await started(harness, {"vendor1": CHAINS, "vendor2": OFFLINE})
    buyer = await harness.buyer("buyer1")
    chain = await buyer.run(lambda: buyer.pay("vendor1", 5, 2, length=100))  # 5 x 2 x 2
    assert chain.acknowledged == 10
    buyer = await harness.buyer("buyer1")
    await buyer.run(lambda: pay_with_scrip(buyer, "vendor2", 2, 30, mint_value=100))
    buyer = await harness.buyer("buyer1")
    chain = await buyer.run(lambda: buyer.pay("vendor2", 3, 1, length=100))  # a scrip vendor
    assert chain.acknowledged == 3
    await harness.stop()  # vendors redeem and deposit as they stop

    paid = 10 * CHAINS.unit_value + 60 + 3 * OFFLINE.unit_value
    report = audit(tmp_path)
    assert_balanced(report, {"serials": 1, "minted": 100, "credited": 60, "outstanding": 40})
    assert report["debited"] == report["credited"] == paid
    assert report["redemptions"] >= 2


@pytest.mark.asyncio
async def test_payword_on_line_above_a_value_registers_only_the_large_chain(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    terms = VendorTerms(unit_value=2, online=True, online_above=100)  # `--online-above 100`
    await started(harness, {"vendor1": terms, "vendor2": terms})
    buyer = await harness.buyer("buyer1")
    await buyer.run(lambda: buyer.pay("vendor1", 2, 3, length=50))  # worth 100: off-line
    wallet = await harness.buyer("buyer1")
    assert (await wallet.run(wallet.balance)).reserved == 0  # the broker never saw it
    buyer = await harness.buyer("buyer1")
    await buyer.run(lambda: buyer.pay("vendor2", 2, 3, length=51))  # worth 102: registered
    wallet = await harness.buyer("buyer1")
    assert (await wallet.run(wallet.balance)).reserved == 102  # held until it is redeemed
    await harness.stop()

    report = audit(tmp_path)
    assert report["ok"], report["findings"]
    assert report["debited"] == report["credited"] == 2 * (2 * 3 * 2)
