"""A vendor claiming more scrip money than was spent (docs/SCHEMES.md 3.12).

Each deposit is refused and the money stays where it was: the audit of the resulting
ledger still balances. A claim on a serial minted for the vendor is recorded as
``deposit-rejected`` with the bytes presented; one on a serial it was never shown proves
nothing about money and is only answered and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from agents.daemons.broker_log import describe
from broker_ledger.audit import LedgerAudit
from broker_ledger.store import EventStore
from protocol.broker_events import DepositRejected
from protocol.codec import decode_as
from protocol.messages import Deposit, Deposited, Error, Minted
from protocol.scrip import tag_scrip
from tests.ledger.scenario import persist, project
from tests.support.scrip_desk import ScripDesk, scrip_of
from tests.support.world import make_world, seeded_identity

DAY = 86_400.0


def same_serial_twice(desk: ScripDesk, scrip: bytes) -> tuple[str, bytes, int, bytes]:
    """Generation 0 was deposited at price 10; the vendor claims it again at 60."""
    return "vendor1", scrip, 60, desk.pay("vendor1", scrip, 60)


def another_vendors_serial(desk: ScripDesk, scrip: bytes) -> tuple[str, bytes, int, bytes]:
    """vendor2 never saw this serial; it presents it anyway, with change under its own key."""
    spent = scrip_of(scrip)
    key = desk.vendor_key("vendor2", spent.period)
    change = tag_scrip(msgspec.structs.replace(spent, generation=1, value=90), key)
    return "vendor2", scrip, 10, change


def inflated_change(desk: ScripDesk, scrip: bytes) -> tuple[str, bytes, int, bytes]:
    """Change the vendor never issued: generation 1 worth 95 after a price of 10."""
    gen1 = scrip_of(desk.pay("vendor1", scrip, 10))
    key = desk.vendor_key("vendor1", gen1.period)
    richer = tag_scrip(msgspec.structs.replace(gen1, value=95), key)
    next_change = tag_scrip(msgspec.structs.replace(gen1, generation=2, value=5), key)
    return "vendor1", richer, 90, next_change


def after_the_deadline(desk: ScripDesk, scrip: bytes) -> tuple[str, bytes, int, bytes]:
    """A payment held back until the serial's deadline had passed."""
    gen1 = desk.pay("vendor1", scrip, 10)
    desk.world.now = scrip_of(scrip).expires / 1000 + 2 * DAY + 1
    return "vendor1", gen1, 20, desk.pay("vendor1", gen1, 20)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("attack", "words", "kept"),
    [
        (same_serial_twice, "generation 0 already deposited", True),
        (another_vendors_serial, "not minted for vendor2", False),
        (inflated_change, "outstanding", True),
        (after_the_deadline, "past its deadline", True),
    ],
)
async def test_a_false_deposit_is_refused_recorded_and_the_books_balance(
    tmp_path: Path,
    attack: Callable[[ScripDesk, bytes], tuple[str, bytes, int, bytes]],
    words: str,
    *,
    kept: bool,
) -> None:
    world = make_world(vendors=2, buyers=1)
    desk = ScripDesk(world)
    answer = desk.mint("buyer1", "vendor1", 100)
    assert isinstance(answer, Minted)
    scrip = answer.scrip
    honest = desk.deposit("vendor1", scrip, 10, desk.pay("vendor1", scrip, 10))
    assert honest == Deposited(1, 0, 10, 90, desk.pay("vendor1", scrip, 10))

    vendor, spent, price, change = attack(desk, scrip)
    refusal = desk.deposit(vendor, spent, price, change)
    assert isinstance(refusal, Error)
    assert refusal.code == "deposit"
    assert words in refusal.detail
    recorded = [e for e in desk.events if isinstance(e, DepositRejected)]
    assert len(recorded) == kept
    for rejected in recorded:
        assert rejected.vendor == vendor
        assert rejected.serial == scrip_of(spent).serial
        assert decode_as(Deposit, rejected.deposit) == Deposit(spent, "", price, change)
        level, line = describe(rejected) or (0, "")
        assert level == logging.WARNING  # the operator hears of it
        assert line.startswith(f"deposit refused: vendor={vendor}")
    totals = world.broker.totals
    assert (totals.debited["buyer1"], totals.credited[vendor]) == (
        10,
        10 if vendor == "vendor1" else 0,
    )

    path = tmp_path / "ledger.db"
    store = await EventStore.open(path, "broker", signer=seeded_identity("broker"))
    try:
        await persist(world, store)
        await project(path, store)
    finally:
        await store.close()
    report = LedgerAudit(path, world.broker.info.sign_key).run()
    assert report.ok, report.findings
    assert report.debited == report.credited == 10
    assert (report.scrip_minted, report.scrip_credited, report.scrip_outstanding) == (100, 10, 90)
