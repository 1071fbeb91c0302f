"""On-line reservations return to the buyer once nothing can be redeemed on them any more."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from broker_ledger.audit import LedgerAudit
from broker_ledger.codec import DEFAULT_CODEC
from broker_ledger.store import EventStore
from protocol.broker import BrokerCore
from protocol.broker_events import AnyBrokerEvent, ReservationReleased
from protocol.events import PeerError, ReceiptReceived
from protocol.vendor import VendorTerms
from tests.ledger.scenario import persist, project
from tests.support.world import events_of, make_world, seeded_identity


@pytest.mark.asyncio
async def test_an_expired_on_line_reservation_is_released_and_audits(tmp_path: Path) -> None:
    world = make_world(vendors=0, buyers=0)
    path = tmp_path / "ledger.db"
    store = await EventStore.open(path, "broker", signer=seeded_identity("broker"))
    terms = VendorTerms(unit_value=1, currency="EUR", max_length=1000, max_jump=100, online=True)
    kiosk = world.enroll_vendor("kiosk", terms)
    alice = world.enroll_buyer("alice", credit_limit=100)
    spent = alice.open_channel("kiosk", 60, world.now, lifetime=60).commitment_id
    idle = alice.open_channel("kiosk", 40, world.now, lifetime=60).commitment_id
    world.pump()
    alice.pay(spent, 25, world.now)
    world.pump()
    kiosk.redeem_all(world.now)
    world.pump()
    broker = world.broker
    await persist(world, store)
    assert broker.totals.reserved["alice"] == 35 + 40  # what is left of both chains
    assert broker.get_timer() == pytest.approx(world.now + 60 + broker.policy.redemption_grace)

    # Nothing is redeemable past the deadline: both reservations come back, once.
    due = broker.get_timer()
    assert due is not None
    events = [*broker.handle_timer(due + 1), *broker.handle_timer(due + 2)]
    released = [e for e in events if isinstance(e, ReservationReleased)]
    assert sorted((e.commitment_id, e.amount) for e in released) == sorted(
        [(spent, 35), (idle, 40)]
    )
    assert broker.totals.reserved["alice"] == 0
    assert broker.get_timer() is None
    await store.append_events(events)

    # The freed credit is usable again (75 of the limit were held; 25 were spent).
    world.now = due + 3
    fresh = alice.open_channel("kiosk", 75, world.now, lifetime=60).commitment_id
    world.pump()
    assert any(e.commitment_id == fresh for e in events_of(world, "alice", ReceiptReceived))
    assert not [e for e in events_of(world, "alice", PeerError) if "credit" in e.detail]
    await persist(world, store)
    await project(path, store)
    await store.close()

    report = LedgerAudit(path, broker.info.sign_key).run()
    assert report.ok, report.findings
    rebuilt = BrokerCore("broker", seeded_identity("broker"))
    rebuilt.rebuild([event for _, event in _events(path)])
    assert rebuilt.totals.reserved["alice"] == broker.totals.reserved["alice"] == 75


def _events(path: Path) -> list[tuple[int, AnyBrokerEvent]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, type, schema, body FROM events ORDER BY seq").fetchall()
    return [(seq, DEFAULT_CODEC.decode(kind, schema, body)) for seq, kind, schema, body in rows]
