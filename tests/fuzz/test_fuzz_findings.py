"""Findings of the fuzzers, kept as plain regression tests."""

from __future__ import annotations

from protocol.broker_events import PaywordsRedeemed, RedemptionRejected
from protocol.chain import HashChain
from protocol.credentials import sign_commitment
from protocol.envelope import Auth
from protocol.errors import RedemptionError
from protocol.events import BalanceReceived, MessageRejected
from protocol.messages import Commitment, Redeem
from tests.support.world import World, events_of, make_world

COUNT_MAX = 2**63 - 1


def redeem_chain(world: World, unit_value: int, units: int, seed: bytes) -> list[object]:
    """The buyer signs a chain of ``unit_value``; the vendor redeems ``units`` of it."""
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    chain = HashChain(seed, 10)
    now_ms = int(world.now * 1000)
    commitment = Commitment(
        "vendor1", buyer.certificate, chain.root, 10, unit_value, "EUR", now_ms, now_ms + 10**6
    )
    signed, _ = sign_commitment(buyer.identity, commitment)
    redeem = Redeem(signed, units, chain.word(units))
    vendor.send("broker", redeem, world.now, auth=Auth.PAIR, key=vendor.broker_key)
    (out,) = vendor.data_to_send()
    return list(world.broker.receive(out.topic, out.payload, world.now))


def test_a_credit_beyond_the_wire_count_is_refused_not_raised() -> None:
    # Was: OverflowError out of BrokerCore.receive while encoding ``Redeemed``, after the
    # totals had already been credited with more than a ``Count`` can carry.
    world = make_world()
    events = redeem_chain(world, COUNT_MAX, 3, b"\x01" * 32)
    # The refusal, recorded in the ledger as evidence, and the rejection: nothing else.
    assert [type(e) for e in events] == [RedemptionRejected, MessageRejected]
    rejected = events[1]
    assert isinstance(rejected, MessageRejected)
    assert isinstance(rejected.error, RedemptionError)
    assert not world.broker.totals.credited.get("vendor1")


def test_totals_over_many_chains_stay_within_the_wire_count() -> None:
    world = make_world()
    accepted = redeem_chain(world, 2**62, 1, b"\x02" * 32)
    assert not [e for e in accepted if isinstance(e, MessageRejected)]
    assert [type(e) for e in accepted if isinstance(e, PaywordsRedeemed)] == [PaywordsRedeemed]
    refused = redeem_chain(world, 2**62, 2, b"\x03" * 32)
    assert isinstance(refused[-1], MessageRejected)
    assert world.broker.totals.credited["vendor1"] == 2**62 <= COUNT_MAX
    world.pump()
    world.buyers["buyer1"].query_balance(world.now)
    world.pump()
    (balance,) = events_of(world, "buyer1", BalanceReceived)
    assert balance.balance.debited == 2**62
