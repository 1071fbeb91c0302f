"""Billing periods, exactly-once projections, replay after restarts, and upcasting."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_ledger.billing import PeriodError, close_period
from broker_ledger.codec import EventCodec
from broker_ledger.projections import Projector, fold_all
from broker_ledger.store import EventStore
from protocol.broker import BrokerCore
from protocol.broker_events import AccountOpened, AnyBrokerEvent, InvoiceIssued, StatementIssued
from tests.ledger.scenario import build_ledger, persist
from tests.support.world import make_world, seeded_identity


async def decoded(store: EventStore) -> list[tuple[int, AnyBrokerEvent]]:
    return [(row.seq, store.decode(row)) for row in await store.read_all(limit=10**9)]


@pytest.mark.asyncio
async def test_closing_a_period_twice_changes_nothing_and_balances(tmp_path: Path) -> None:
    run = await build_ledger(tmp_path / "l.db", payments=80, fee_basis_points=300, close=False)
    store = await EventStore.open(run.path, "broker", signer=seeded_identity("broker"))
    first = await close_period(store, "2026-01", at=1, basis_points=300)
    head = store.head
    again = await close_period(store, "2026-01", at=2, basis_points=300)
    with pytest.raises(PeriodError, match="already closed with a fee of 300 basis points"):
        await close_period(store, "2026-01", at=2, basis_points=0)
    racing = await asyncio.gather(
        close_period(store, "2026-02", at=3), close_period(store, "2026-02", at=4)
    )
    events = [event for _, event in await decoded(store)]
    await store.close()

    assert first.newly_closed
    assert not again.newly_closed
    assert (again.debited, again.fees) == (first.debited, first.fees)
    assert head[0] < store.head[0]  # only 2026-02's marker was added since
    assert sorted(s.newly_closed for s in racing) == [False, True]
    assert racing[0].debited == racing[1].debited == 0  # nothing redeemed since 2026-01
    invoices = [e for e in events if isinstance(e, InvoiceIssued) and e.period == "2026-01"]
    statements = [e for e in events if isinstance(e, StatementIssued) and e.period == "2026-01"]
    assert sum(i.total for i in invoices) == first.debited == run.paid
    assert sum(s.net for s in statements) + sum(s.fee for s in statements) == first.debited
    assert first.debited == first.credited + first.fees
    assert first.fees == sum(s.gross * 300 // 10_000 for s in statements)


@pytest.mark.asyncio
async def test_broker_restarts_from_the_ledger_with_the_same_state(tmp_path: Path) -> None:
    run = await build_ledger(tmp_path / "l.db", payments=50)
    store = await EventStore.open(run.path, "broker", signer=seeded_identity("broker"))
    restarted = BrokerCore("broker", seeded_identity("broker"))
    restarted.rebuild(event for _, event in await decoded(store))
    await store.close()
    live = run.world.broker
    assert restarted.totals.debited == live.totals.debited
    assert restarted.totals.credited == live.totals.credited
    assert {cid: c.index for cid, c in restarted.chains.items()} == {
        cid: c.index for cid, c in live.chains.items()
    }
    assert restarted.accounts.keys() == live.accounts.keys()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), catch_ups=st.integers(1, 6))
def test_projections_caught_up_piecewise_equal_a_full_replay(seed: int, catch_ups: int) -> None:
    async def scenario(path: Path) -> None:
        world = make_world(vendors=2, buyers=2)
        store = await EventStore.open(path, "broker", signer=seeded_identity("broker"))
        rng = random.Random(seed)
        channels = [
            world.buyers[b].open_channel(v, 500, world.now).commitment_id
            for b in world.buyers
            for v in world.vendors
        ]
        owners = [b for b in world.buyers for _ in world.vendors]
        world.pump()
        await persist(world, store)
        for step in range(catch_ups):
            for _ in range(rng.randint(1, 15)):
                pick = rng.randrange(len(channels))
                world.buyers[owners[pick]].pay(channels[pick], rng.randint(1, 5), world.now)
            world.pump()
            for vendor in world.vendors.values():
                vendor.redeem_all(world.now)
            world.pump()
            await persist(world, store)
            if step % 2:
                await close_period(store, f"p{step}", at=step, basis_points=rng.randint(0, 500))
            projector = await Projector.open(path)  # a fresh process each time
            await projector.catch_up(await decoded(store))
            await projector.catch_up(await decoded(store))  # again: exactly once
            await projector.close()
        full = fold_all(await decoded(store))
        live = await Projector.open(path)
        assert live.models.balances == full.balances
        assert live.models.chains == full.chains
        assert live.models.lines == full.lines
        assert live.models.position == full.position == store.head[0]
        await live.close()
        debits = sum(b.debited for b in full.balances.values())
        credits_ = sum(b.credited for b in full.balances.values())
        assert (
            debits
            == credits_
            == world.broker.totals.debited["buyer1"] + world.broker.totals.debited.get("buyer2", 0)
        )
        await store.close()

    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(scenario(Path(directory) / "ledger.db"))


@pytest.mark.asyncio
async def test_old_event_schemas_are_upcast_on_read(tmp_path: Path) -> None:
    """AccountOpened v1 had no currency; v2 added it. Old rows must still replay."""

    class AccountOpenedV1(msgspec.Struct, tag_field="type", tag="account-opened", kw_only=True):
        at: int
        account: str
        role: str
        credit_limit: int
        token_nonce: bytes

    def v1_to_v2(body: dict[str, object]) -> dict[str, object]:
        return {**body, "currency": "EUR"}

    path = tmp_path / "old.db"
    store = await EventStore.open(path, "broker")
    old_body = msgspec.msgpack.encode(
        AccountOpenedV1(at=5, account="alice", role="buyer", credit_limit=10, token_nonce=b"n")
    )
    # Write the row the way the old version did: schema 1, a body without currency.
    from broker_ledger.format import GENESIS, link_hash

    digest = link_hash(GENESIS, 1, "account:alice", 1, "account-opened", 1, 5, old_body)
    await store.connection.execute("INSERT INTO streams VALUES (1, 'account:alice')")
    await store.connection.execute(
        "INSERT INTO events VALUES (1, 1, 1, 'account-opened', 1, 5, ?, ?)", (old_body, digest)
    )
    await store.close()

    versions = dict(EventCodec().versions, **{"account-opened": 2})
    codec = EventCodec(versions, {("account-opened", 1): v1_to_v2})
    upgraded = await EventStore.open(path, "broker", codec=codec)
    (row,) = await upgraded.read_stream("account:alice")
    event = upgraded.decode(row)
    assert isinstance(event, AccountOpened)
    assert (event.account, event.currency, row.schema) == ("alice", "EUR", 1)
    written = await upgraded.append(
        "account:bob",
        [
            AccountOpened(
                at=6, account="bob", role="buyer", credit_limit=1, currency="USD", token_nonce=b"m"
            )
        ],
    )
    assert written[0].schema == 2
    await upgraded.close()
    from broker_ledger.audit import LedgerAudit

    report = LedgerAudit(path, codec=codec).run()
    assert report.passed["event-schemas"]
    assert report.passed["hash-links"]


@pytest.mark.asyncio
async def test_settlements_are_recorded_and_projected(tmp_path: Path) -> None:
    from broker_ledger.billing import record_settlement

    run = await build_ledger(tmp_path / "l.db", payments=20)
    store = await EventStore.open(run.path, "broker", signer=seeded_identity("broker"))
    await record_settlement(store, "buyer1", 40, "bank transfer 2026-02-01", at=10)
    with pytest.raises(ValueError, match="no account"):
        await record_settlement(store, "nobody", 1, "x", at=11)
    with pytest.raises(ValueError, match="positive"):
        await record_settlement(store, "buyer1", 0, "x", at=11)
    models = fold_all(await decoded(store))
    await store.close()
    assert models.balances["buyer1"].settled == 40
