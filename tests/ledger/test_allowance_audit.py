"""The audit's ``allowance-grants`` check over real ledger files (docs/SCHEMES.md 4.5)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from broker_ledger.audit import LedgerAudit
from broker_ledger.store import EventStore
from protocol.allowance import day_end, day_of, sign_grant
from protocol.broker import BrokerPolicy
from protocol.broker_events import AllowanceGranted, AllowanceReleased
from protocol.codec import decode_allowance_grant, decode_signed
from protocol.crypto import AgentKeys
from protocol.vendor import VendorTerms
from tests.ledger.scenario import persist, project
from tests.support.world import World, make_world, seeded_identity

TERMS = VendorTerms(unit_value=1, currency="EUR", max_length=1_000, max_jump=100, allowance=True)


async def granted_ledger(path: Path) -> tuple[World, EventStore]:
    """Alice holds a grant, spent part of it off-line, and the day ended and released it."""
    world = make_world(vendors=0, buyers=0, policy=BrokerPolicy(allowance_vendors=4))
    store = await EventStore.open(path, "broker", signer=seeded_identity("broker"))
    kiosk = world.enroll_vendor("kiosk", TERMS)
    alice = world.enroll_buyer("alice", credit_limit=1_000)
    world.net.events["broker"].append(world.broker.set_allowance("alice", 100, world.now))
    cid = alice.open_channel("kiosk", 50, world.now).commitment_id
    world.pump()
    alice.pay(cid, 30, world.now)
    world.pump()
    kiosk.redeem_all(world.now)
    world.pump()
    await persist(world, store)
    return world, store


def the_grant(world: World) -> AllowanceGranted:
    (grant,) = world.broker.allowances.grants.values()
    return grant


def tampered(grant: AllowanceGranted, signer: AgentKeys, **changes: int) -> AllowanceGranted:
    """The grant for another day or amount, event and signed body alike, signed by ``signer``."""
    body = decode_allowance_grant(decode_signed(grant.grant).body)
    signed_changes = {k: v for k, v in changes.items() if k in ("day", "amount")}
    signed = sign_grant(signer, msgspec.structs.replace(body, **signed_changes))
    at = changes.get("day", grant.day) * 86_400_000 + 1
    return msgspec.structs.replace(grant, grant=signed, at=at, **changes)


@pytest.mark.asyncio
async def test_grants_and_their_release_audit_clean(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    world, store = await granted_ledger(path)
    end = day_end(day_of(world.now))
    released = world.broker.handle_timer(end)
    assert [type(e) for e in released] == [AllowanceReleased]
    await store.append_events(released)
    await project(path, store)
    await store.close()

    report = LedgerAudit(path, world.broker.info.sign_key).run()
    assert report.ok, report.findings
    assert report.passed["allowance-grants"]
    assert report.passed["projections"]  # the reservation came and went in the balances


@pytest.mark.asyncio
async def test_a_second_grant_the_same_day_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    world, store = await granted_ledger(path)
    grant = the_grant(world)
    await store.append_events([msgspec.structs.replace(grant, at=grant.at + 1)])
    await store.close()

    report = LedgerAudit(path, world.broker.info.sign_key).run()
    assert not report.passed["allowance-grants"]
    assert any("second grant" in f.detail for f in report.findings)


@pytest.mark.asyncio
async def test_a_grant_above_the_rule_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    world, store = await granted_ledger(path)
    grant = the_grant(world)
    big = tampered(grant, world.broker.identity, day=grant.day + 1, amount=200, reserved=800)
    await store.append_events([big])
    await store.close()

    report = LedgerAudit(path, world.broker.info.sign_key).run()
    assert not report.passed["allowance-grants"]
    details = [f.detail for f in report.findings]
    assert any("amount 200, the rule gives 100" in d for d in details), details


@pytest.mark.asyncio
async def test_a_grant_not_signed_by_the_broker_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    world, store = await granted_ledger(path)
    grant = the_grant(world)
    forged = tampered(grant, seeded_identity("mallory"), day=grant.day + 1)
    await store.append_events([forged])
    await store.close()

    report = LedgerAudit(path, world.broker.info.sign_key).run()
    assert not report.passed["allowance-grants"]
    assert any("not signed by the broker key" in f.detail for f in report.findings)


@pytest.mark.asyncio
async def test_an_early_or_double_release_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    world, store = await granted_ledger(path)
    grant = the_grant(world)
    early = AllowanceReleased(at=grant.at + 5, buyer="alice", day=grant.day, amount=grant.reserved)
    await store.append_events([early, early])
    await store.close()

    report = LedgerAudit(path, world.broker.info.sign_key).run()
    details = [f.detail for f in report.findings if f.check == "allowance-grants"]
    assert any("before the day ended" in d for d in details), details
    assert any("released twice" in d for d in details), details
