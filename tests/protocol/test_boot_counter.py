"""A buyer without a real-time clock: counters from a boot epoch, across restarts.

Each start raises a persisted epoch and counts every stream up from ``epoch << 40``. The
vendor and the broker hold the buyer's streams in their replay windows across the buyer's
restarts (a few seconds apart here), so a start whose counters did not lie above the last
one's would be refused as a replay.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from protocol.boot_counter import EPOCH_SHIFT, MAX_EPOCH, boot_counter
from protocol.buyer import BuyerCore
from protocol.envelope import parse
from protocol.errors import LocalProtocolError, ReplayError
from protocol.events import BalanceReceived, CertificateReceived, MessageRejected
from protocol.memory import MemoryNetwork
from tests.support.world import SeededRandom, World, events_of, make_world, seeded_identity

BUYER = "device"


def first_start(world: World) -> BuyerCore:
    """Enrolled under epoch 1, as a device's first start writes it."""
    token = world.net.open_account(world.broker, BUYER, "buyer", 10**6, "EUR", world.now)
    buyer = BuyerCore(
        BUYER,
        seeded_identity(BUYER),
        world.broker.info,
        random=SeededRandom(BUYER),
        counter_source=boot_counter(1),
    )
    world.net.attach(buyer, world.now)
    buyer.enroll(token, world.now)
    world.pump()
    assert events_of(world, BUYER, CertificateReceived)
    return buyer


def restart(world: World, old: BuyerCore, cid: bytes, epoch: int, reserved: int) -> BuyerCore:
    """A new process under ``epoch``: certificate and chain from the wallet, commit resent."""
    world.now += 2.0
    buyer = BuyerCore(
        BUYER, seeded_identity(BUYER), world.broker.info, counter_source=boot_counter(epoch)
    )
    buyer.restore_certificate(old.certificate, world.now)
    world.net.attach(buyer, world.now)
    channel = old.channels[cid]
    buyer.restore_channel(
        "vendor1", channel.seed, channel.commitment, channel.chain.length, reserved
    )
    buyer.resume(cid, world.now)
    world.pump()
    return buyer


def pay_and_ask(world: World, buyer: BuyerCore, cid: bytes, units: int) -> int:
    """Pay ``units`` one at a time and ask the broker for the balance; the reservation."""
    reserved = 0
    for _ in range(units):
        event = buyer.pay(cid, 1, world.now)
        reserved = event.reserved or reserved
        world.pump(0.01)
    buyer.query_balance(world.now)
    world.pump()
    return max(reserved, buyer.channels[cid].reserved)


def counters_by_stream(net: MemoryNetwork) -> dict[tuple[str, int, bytes], list[int]]:
    """What the buyer sent, per stream (recipient, auth, ref), in the order it was sent."""
    streams: dict[tuple[str, int, bytes], list[int]] = defaultdict(list)
    for _, _topic, payload in net.log:
        parsed = parse(payload)
        if parsed.header.sender == BUYER:  # a buyer sends nothing but inbox messages
            streams[parsed.header.recipient, int(parsed.auth), parsed.header.ref].append(
                parsed.header.counter
            )
    return streams


def test_a_buyer_counting_from_its_boot_epoch_is_accepted_across_two_restarts() -> None:
    world = make_world(buyers=0, record=True)
    buyer = first_start(world)
    cid = buyer.open_channel("vendor1", 1_000, world.now).commitment_id
    world.pump()
    reserved = pay_and_ask(world, buyer, cid, 5)
    for epoch in (2, 3):
        buyer = restart(world, buyer, cid, epoch, reserved)
        reserved = pay_and_ask(world, buyer, cid, 5)

    for account in ("vendor1", "broker", BUYER):
        assert events_of(world, account, MessageRejected) == []
    assert len(events_of(world, BUYER, BalanceReceived)) == 3  # one per start, on PAIR
    assert world.vendors["vendor1"].chains[cid].index == buyer.channels[cid].spent
    streams = counters_by_stream(world.net)
    assert len(streams) == 3  # enrollment (TOKEN), the broker (PAIR), the chain (CHAIN)
    for counters in streams.values():
        assert counters == sorted(set(counters))  # never repeated, always rising
    chain = streams["vendor1", 2, cid]
    assert {c >> EPOCH_SHIFT for c in chain} == {1, 2, 3}


def test_a_start_that_reuses_its_epoch_is_refused_as_a_replay() -> None:
    """Why the epoch must be written before the first message: the same one replays."""
    world = make_world(buyers=0)
    buyer = first_start(world)
    cid = buyer.open_channel("vendor1", 1_000, world.now).commitment_id
    world.pump()
    reserved = pay_and_ask(world, buyer, cid, 3)
    restart(world, buyer, cid, 1, reserved)
    refused = events_of(world, "vendor1", MessageRejected)
    assert refused
    assert all(isinstance(event.error, ReplayError) for event in refused)


def test_epochs_keep_counters_within_the_header() -> None:
    assert boot_counter(MAX_EPOCH)(0.0) + 2**EPOCH_SHIFT - 1 == 2**63 - 1
    for epoch in (0, MAX_EPOCH + 1):
        with pytest.raises(LocalProtocolError):
            boot_counter(epoch)
