"""Builds a real ledger file from a run of the in-memory protocol world."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from broker_ledger.billing import PeriodSummary, close_period
from broker_ledger.projections import Projector
from broker_ledger.store import EventStore
from tests.support.world import World, make_world, seeded_identity


@dataclass
class LedgerRun:
    path: Path
    world: World
    paid: int
    summary: PeriodSummary | None


async def persist(world: World, store: EventStore) -> None:
    events = world.net.ledger_events(world.broker.account)
    if events:
        await store.append_events(events)


async def project(path: Path, store: EventStore) -> None:
    projector = await Projector.open(path)
    try:
        rows = await store.read_all(after=projector.models.position, limit=10**9)
        await projector.catch_up((row.seq, store.decode(row)) for row in rows)
    finally:
        await projector.close()


async def build_ledger(
    path: Path, *, payments: int = 120, seed: int = 5, fee_basis_points: int = 0, close: bool = True
) -> LedgerRun:
    world = make_world(vendors=2, buyers=3)
    store = await EventStore.open(
        path, "broker", signer=seeded_identity("broker"), checkpoint_every=40
    )
    try:
        await persist(world, store)
        channels = {
            (b, v): world.buyers[b].open_channel(v, 2_000, world.now).commitment_id
            for b in world.buyers
            for v in world.vendors
        }
        world.pump()
        rng = random.Random(seed)
        paid = 0
        for number in range(payments):
            pair = rng.choice(sorted(channels))
            units = rng.randint(1, 9)
            world.buyers[pair[0]].pay(channels[pair], units, world.now)
            paid += units
            if number % 10 == 9:
                world.pump(0.5)
                for vendor in world.vendors.values():
                    vendor.redeem_all(world.now)
                world.pump()
                await persist(world, store)
        world.pump(0.5)
        for vendor in world.vendors.values():
            vendor.redeem_all(world.now)
        world.pump()
        await persist(world, store)
        summary = None
        if close:
            at = int(world.now * 1000)
            summary = await close_period(store, "2026-01", at=at, basis_points=fee_basis_points)
        await project(path, store)
    finally:
        await store.close()
    return LedgerRun(path, world, paid, summary)
