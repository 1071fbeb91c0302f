"""Scrip in the real ledger: a history audits clean, and each kind of bad scrip event is caught."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agents.cli.main import main
from broker_ledger.audit import LedgerAudit
from broker_ledger.audit_result import AuditReport
from broker_ledger.billing import close_period
from broker_ledger.codec import DEFAULT_CODEC
from broker_ledger.report import as_dict, as_text
from broker_ledger.store import EventStore
from protocol.broker_events import AnyBrokerEvent, ScripDeposited, ScripMinted, ScripReturned
from protocol.messages import Minted
from protocol.scrip import PERIOD_MS, tag_scrip
from tests.ledger.scenario import persist, project
from tests.support.scrip_desk import ScripDesk, scrip_of
from tests.support.world import make_world, seeded_identity

BROKER_KEY = seeded_identity("broker").sign_key
DAY = 86_400.0
SCRIP_CHECKS = ("scrip-conservation", "scrip-serials", "scrip-arithmetic", "scrip-limits")


@dataclass
class ScripLedger:
    path: Path
    desk: ScripDesk
    deposit: ScripDeposited
    """The last deposit on serial 2, which stays open."""
    now: float


def mint(desk: ScripDesk, buyer: str, vendor: str, value: int) -> bytes:
    answer = desk.mint(buyer, vendor, value)
    assert isinstance(answer, Minted), answer
    return answer.scrip


async def build(path: Path) -> ScripLedger:
    """Serial 1 returned at its deadline, 2 partly spent and open, 3 used up; some paywords."""
    world = make_world(vendors=2, buyers=2)
    world.enroll_buyer("frugal", credit_limit=50)
    desk = ScripDesk(world)
    store = await EventStore.open(path, "broker", signer=seeded_identity("broker"))
    try:
        mint(desk, "buyer1", "vendor2", 60)
        mint(desk, "frugal", "vendor1", 30)
        world.now += 1.5 * DAY
        gen0 = mint(desk, "buyer1", "vendor1", 100)
        used = mint(desk, "buyer2", "vendor2", 40)
        gen1 = desk.pay("vendor1", gen0, 30)
        gen2 = desk.pay("vendor1", gen1, 20)
        assert desk.deposit("vendor1", gen1, 20, gen2, item="article") is not None
        assert desk.deposit("vendor2", used, 40, b"") is not None
        opened = world.buyers["buyer1"].open_channel("vendor1", 100, world.now)
        world.pump()
        world.buyers["buyer1"].pay(opened.commitment_id, 7, world.now)
        world.pump()
        world.vendors["vendor1"].redeem_all(world.now)
        world.pump()
        await persist(world, store)
        due = world.broker.get_timer()
        assert due is not None
        world.now = due
        world.net.events["broker"].extend(world.broker.handle_timer(due))
        await persist(world, store)
        await close_period(store, "2026-01", at=int(world.now * 1000))
        await project(path, store)
    finally:
        await store.close()
    (deposit,) = [
        e for e in world.net.events["broker"] if isinstance(e, ScripDeposited) and e.serial == 3
    ]
    return ScripLedger(path, desk, deposit, world.now)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> ScripLedger:
    path = tmp_path_factory.mktemp("scrip") / "scrip.db"
    return asyncio.run(build(path))


def audit(path: Path) -> AuditReport:
    return LedgerAudit(path, BROKER_KEY).run()


def test_a_scrip_deposited_from_before_the_claim_still_reads() -> None:
    event = ScripDeposited(
        at=1, vendor="v", buyer="b", serial=1, generation=0, spent=b"s", item="", price=3,
        change=b"c", credit=3, outstanding=7, claim=b"\x01" * 16,
    )  # fmt: skip
    name, schema, body = DEFAULT_CODEC.encode(event)
    stored = msgspec.msgpack.decode(body)
    del stored["claim"]  # the body an older broker wrote
    old = DEFAULT_CODEC.decode(name, schema, msgspec.msgpack.encode(stored))
    assert old == msgspec.structs.replace(event, claim=b"")
    assert DEFAULT_CODEC.decode(name, schema, body) == event


def test_a_scrip_history_audits_clean_with_its_four_totals(clean: ScripLedger) -> None:
    report = audit(clean.path)
    assert report.ok, report.findings
    assert all(report.passed[name] for name in SCRIP_CHECKS)
    # 60 returned; 30 outstanding (frugal's, also returned); 100: 50 credited, 50 left; 40 spent.
    assert report.scrip_serials == 4
    assert report.scrip_minted == 60 + 30 + 100 + 40
    assert report.scrip_credited == 50 + 40
    assert report.scrip_returned == 60 + 30
    assert report.scrip_outstanding == 50
    assert report.debited == report.credited == 50 + 40 + 7
    assert (
        "scrip         4 serials, 2 deposits: minted 230 = credited 90 + returned 90"
        " + outstanding 50" in as_text(report)
    )
    assert as_dict(report)["scrip"]["outstanding"] == 50


def test_the_read_models_hold_scrip_and_the_invoices_bill_its_credits(clean: ScripLedger) -> None:
    with sqlite3.connect(clean.path) as db:
        rows = {row[0]: row[1:] for row in db.execute("SELECT * FROM scrip")}
        lines = db.execute(
            "SELECT account, counterparty, units, amount FROM invoice_lines"
            " WHERE kind = 'invoice' ORDER BY account, counterparty"
        ).fetchall()
        balances = dict(db.execute("SELECT account, reserved FROM balances").fetchall())
    deadline = rows[3][-1]
    assert rows[3] == ("vendor1", "buyer1", 100, 1, 50, 50, 0, deadline)
    assert rows[1][3:7] == (None, 0, 0, 60)
    assert rows[4][3:7] == (0, 40, 0, 0)
    assert deadline == scrip_of(clean.desk.world.broker.scrip.records[3].minted).expires + int(
        2 * DAY * 1000
    )
    assert lines == [("buyer1", "vendor1", 7, 57), ("buyer2", "vendor2", 0, 40)]
    assert balances["buyer1"] == 50  # the scrip left; an off-line chain reserves nothing


async def forge(clean: ScripLedger, tmp_path: Path, *events: AnyBrokerEvent) -> AuditReport:
    """A copy of the clean ledger with ``events`` appended under the broker's own key."""
    copy = tmp_path / "forged.db"
    shutil.copy(clean.path, copy)
    store = await EventStore.open(copy, "broker", signer=seeded_identity("broker"))
    try:
        await store.append_events(list(events))
    finally:
        await store.close()
    return audit(copy)


def failed(report: AuditReport) -> set[str]:
    return {name for name, passed in report.passed.items() if not passed}


@pytest.mark.asyncio
async def test_a_second_credit_of_one_generation_is_caught(
    clean: ScripLedger, tmp_path: Path
) -> None:
    again = msgspec.structs.replace(clean.deposit, at=int(clean.now * 1000), credit=10)
    report = await forge(clean, tmp_path, again)
    assert "scrip-serials" in failed(report)
    assert any("generation 1 credited again" in f.detail for f in report.findings)
    assert report.passed["debits-equal-credits"]


@pytest.mark.asyncio
async def test_a_deposit_whose_credit_does_not_add_up_is_caught(
    clean: ScripLedger, tmp_path: Path
) -> None:
    desk = clean.desk
    gen2 = clean.deposit.change
    gen3 = desk.pay("vendor1", gen2, 10)
    inflated = msgspec.structs.replace(
        clean.deposit,
        at=int(clean.now * 1000),
        generation=2,
        spent=gen2,
        price=10,
        change=gen3,
        credit=25,  # the outstanding value fell by 10
        outstanding=40,
    )
    report = await forge(clean, tmp_path, inflated)
    assert failed(report) == {"scrip-arithmetic", "scrip-conservation"}
    assert any("credit 25" in f.detail for f in report.findings)
    assert report.scrip_credited == 90 + 25


@pytest.mark.asyncio
async def test_a_return_before_the_deadline_is_caught(clean: ScripLedger, tmp_path: Path) -> None:
    early = ScripReturned(
        at=int(clean.now * 1000), buyer="buyer1", vendor="vendor1", serial=3, amount=50
    )
    report = await forge(clean, tmp_path, early)
    assert failed(report) == {"scrip-serials"}
    assert any("returned before its deadline" in f.detail for f in report.findings)


def forged_mint(clean: ScripLedger, deadline: int | None = None, **changes: Any) -> ScripMinted:
    """Serial 5, minted at ``clean.now`` as the broker would, but for ``changes`` (a forgery).

    The bytes carry the event's fields (so only the rule under test can fail); the tag is
    made up, which the audit cannot see (SCHEMES.md 3.10).
    """
    at = int(clean.now * 1000)
    minted = clean.desk.world.broker.scrip.records[3].scrip
    fields: dict[str, Any] = {
        "serial": 5,
        "value": 10,
        "period": at // PERIOD_MS,
        "expires": at + PERIOD_MS // 2,
        **changes,
    }
    scrip = msgspec.structs.replace(minted, **fields)
    return ScripMinted(
        at=at,
        buyer=scrip.buyer,
        buyer_serial=scrip.buyer_serial,
        vendor=scrip.vendor,
        vendor_serial=scrip.vendor_serial,
        serial=scrip.serial,
        period=scrip.period,
        value=scrip.value,
        currency=scrip.currency,
        expires=scrip.expires,
        properties=list(scrip.properties),
        request=bytes(16),
        scrip=tag_scrip(scrip, bytes(32)),
        deadline=scrip.expires + 172_800_000 if deadline is None else deadline,
        max_value=10_000,
        nonce=scrip.nonce,
    )


@pytest.mark.asyncio
async def test_a_mint_as_the_broker_makes_it_audits_clean(
    clean: ScripLedger, tmp_path: Path
) -> None:
    report = await forge(clean, tmp_path, forged_mint(clean))
    assert report.ok, report.findings


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("buyer", "value", "words"),
    [("frugal", 51, "over limit 50"), ("buyer1", 10_001, "10001 > 10000")],
)
async def test_a_mint_beyond_the_limit_is_caught(
    clean: ScripLedger, tmp_path: Path, buyer: str, value: int, words: str
) -> None:
    report = await forge(clean, tmp_path, forged_mint(clean, buyer=buyer, value=value))
    assert failed(report) == {"scrip-limits"}
    assert any(words in f.detail for f in report.findings)


def day_after(clean: ScripLedger) -> int:
    return int(clean.now * 1000) // PERIOD_MS + 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (lambda c: {"period": day_after(c)}, "is not the day it was minted"),
        (lambda c: {"period": day_after(c) - 2}, "is not the day it was minted"),
        (
            lambda c: {"expires": (day_after(c) + 1) * PERIOD_MS + 1},
            "after its period's keys end",
        ),
        (lambda c: {"expires": int(c.now * 1000)}, "not after it was minted"),
        (lambda c: {"expires": int(c.now * 1000) - 1}, "not after it was minted"),
    ],
)
async def test_a_mint_out_of_its_period_or_expiring_out_of_line_is_caught(
    clean: ScripLedger,
    tmp_path: Path,
    changes: Callable[[ScripLedger], dict[str, int]],
    words: str,
) -> None:
    forged = forged_mint(clean, **changes(clean))
    report = await forge(clean, tmp_path, forged)
    assert failed(report) == {"scrip-limits"}, report.findings
    assert any(words in f.detail for f in report.findings), report.findings


@pytest.mark.asyncio
async def test_a_deadline_more_than_a_year_after_expiry_is_caught(
    clean: ScripLedger, tmp_path: Path
) -> None:
    expires = int(clean.now * 1000) + PERIOD_MS // 2
    year = 366 * PERIOD_MS
    at_most = await forge(clean, tmp_path, forged_mint(clean, deadline=expires + year))
    assert at_most.ok, at_most.findings
    beyond = await forge(clean, tmp_path, forged_mint(clean, deadline=expires + year + 1))
    assert failed(beyond) == {"scrip-limits"}
    assert any("more than a year after it expires" in f.detail for f in beyond.findings)


def test_the_html_report_shows_the_scrip_totals_and_each_partys_deposits(
    clean: ScripLedger, tmp_path: Path
) -> None:
    target = tmp_path / "report.html"
    key = BROKER_KEY.hex()
    argv = ["audit", str(clean.path), "--broker-key", key, "--no-progress", "--html", str(target)]
    assert main(argv) == 0
    page = target.read_text()
    assert (
        "<td>scrip</td><td>4 serials, 2 deposits: minted 230 = credited 90 + returned 90"
        " + outstanding 50</td>" in page
    )
    # vendor1: one redemption of 7 units, one deposit of 50; vendor2: one deposit of 40.
    assert "<td>vendor1</td><td>1</td><td>7</td><td>1</td><td>57</td>" in page
    assert "<td>vendor2</td><td>0</td><td>0</td><td>1</td><td>40</td>" in page
    assert "<td>buyer2</td><td>0</td><td>0</td><td>1</td><td>40</td>" in page
