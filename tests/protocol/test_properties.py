"""Property tests: tampering, garbage input, and money conservation under any schedule."""

from __future__ import annotations

import contextlib
from functools import cache

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol import codec, envelope
from protocol.envelope import Auth
from protocol.errors import MicropayError
from protocol.events import MessageRejected, PaymentAccepted, ReceiptReceived
from protocol.messages import MESSAGE_TYPES, Redeem
from tests.support.world import World, events_of, make_world

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@cache
def recorded_traffic() -> tuple[World, list[tuple[str, str, bytes]]]:
    """A world that ran every message kind once, and every envelope it delivered."""
    world = make_world(vendors=1, buyers=1, record=True)
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    opened = buyer.open_channel("vendor1", 1000, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 12, world.now, item="article")
    world.pump()
    vendor.redeem_all(world.now)
    buyer.query_balance(world.now)
    buyer.query_invoice(world.now)
    world.pump()
    world.broker.revoke("buyer1", world.now)
    world.pump()
    kinds = {envelope.parse(p).header.type for _, _, p in world.net.log}
    assert {"enroll", "enrolled", "offer", "commit", "pay", "receipt", "redeem"} <= kinds
    return world, list(world.net.log)


def money_state(world: World) -> tuple[object, ...]:
    vendor = world.vendors["vendor1"]
    buyer = world.buyers["buyer1"]
    return (
        tuple(sorted((cid, s.index, s.redeemed) for cid, s in vendor.chains.items())),
        tuple(sorted((cid, c.acknowledged) for cid, c in buyer.channels.items())),
        tuple(sorted(world.broker.totals.credited.items())),
        tuple(sorted(world.broker.totals.debited.items())),
    )


@SETTINGS
@given(data=st.data())
def test_any_flipped_byte_in_any_envelope_is_rejected(data: st.DataObject) -> None:
    world, log = recorded_traffic()
    recipient, topic, payload = data.draw(st.sampled_from(log))
    position = data.draw(st.integers(0, len(payload) - 1))
    mask = data.draw(st.integers(1, 255))
    flipped = bytearray(payload)
    flipped[position] ^= mask
    before = money_state(world)
    events = world.net.cores[recipient].receive(topic, bytes(flipped), world.now)
    assert len(events) == 1
    assert isinstance(events[0], MessageRejected)
    assert money_state(world) == before


@SETTINGS
@given(data=st.data())
def test_truncated_or_extended_envelopes_are_rejected(data: st.DataObject) -> None:
    world, log = recorded_traffic()
    recipient, topic, payload = data.draw(st.sampled_from(log))
    cut = data.draw(st.integers(0, len(payload) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=40))
    for mangled in (payload[:cut], payload + extra, payload[:cut] + extra):
        assume(mangled != payload)
        events = world.net.cores[recipient].receive(topic, mangled, world.now)
        assert len(events) == 1
        assert isinstance(events[0], MessageRejected)


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=600), kind=st.sampled_from(sorted(MESSAGE_TYPES)))
def test_random_bytes_raise_only_protocol_errors(raw: bytes, kind: str) -> None:
    decoders = (
        envelope.parse,
        lambda b: codec.decode_body(kind, b),
        codec.decode_signed,
        codec.decode_certificate,
        codec.decode_commitment,
    )
    for decode in decoders:
        with contextlib.suppress(MicropayError):
            decode(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=300), auth=st.sampled_from(list(Auth)))
def test_random_envelopes_never_crash_a_core(raw: bytes, auth: Auth) -> None:
    world, log = recorded_traffic()
    payload = bytes([auth]) + raw
    for name, core in world.net.cores.items():
        topic = log[0][1] if log[0][0] == name else f"micropay/v1/in/{name}/buyer1"
        for event in core.receive(topic, payload, world.now):
            assert isinstance(event, MessageRejected)


schedule = st.lists(
    st.tuples(st.integers(1, 250), st.sampled_from(["deliver", "lose", "duplicate", "delay"])),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(operations=schedule)
def test_any_payment_schedule_keeps_vendor_total_equal_to_buyer_total(
    operations: list[tuple[int, str]],
) -> None:
    world = make_world()
    buyer = world.buyers["buyer1"]
    cid = buyer.open_channel("vendor1", 20_000, world.now).commitment_id
    world.pump()
    delayed = []
    for units, fate in operations:
        buyer.pay(cid, units, world.now)
        outgoing = buyer.data_to_send()
        if fate == "delay":
            delayed.extend(outgoing)
            continue
        if fate == "lose":
            continue
        for out in outgoing * (2 if fate == "duplicate" else 1):
            world.net.inject("vendor1", out.topic, out.payload, world.now)
        world.pump()
    for out in delayed:  # late, out of order: stale ones are refused, nothing is lost
        world.net.inject("vendor1", out.topic, out.payload, world.now)
    while (timer := buyer.get_timer()) is not None:
        world.now = max(world.now, timer)
        buyer.handle_timer(world.now)
        world.pump()
    spent = buyer.channels[cid].spent
    accepted = sum(e.amount for e in events_of(world, "vendor1", PaymentAccepted))
    assert accepted == spent == sum(units for units, _ in operations)
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == spent


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_redeeming_in_any_order_never_credits_more_than_paid(data: st.DataObject) -> None:
    world = make_world()
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]
    cid = buyer.open_channel("vendor1", 500, world.now).commitment_id
    world.pump()
    steps = data.draw(st.lists(st.integers(1, 20), min_size=1, max_size=15))
    held = []
    for units in steps:
        buyer.pay(cid, units, world.now)
        world.pump()
        state = vendor.chains[cid]
        held.append((state.index, state.word))
    paid = sum(steps)
    attempts = data.draw(
        st.lists(
            st.one_of(
                st.sampled_from(held),
                st.tuples(st.integers(0, 600), st.binary(min_size=32, max_size=32)),
            ),
            min_size=1,
            max_size=20,
        )
    )
    signed = vendor.chains[cid].verified.signed
    for index, word in attempts:
        vendor.send(
            "broker", Redeem(signed, index, word), world.now, auth=Auth.PAIR, key=vendor.broker_key
        )
        world.pump()
    credited = world.broker.totals.credited.get("vendor1", 0)
    best_valid = max((i for i, w in attempts if (i, w) in held), default=0)
    assert credited == best_valid <= paid
    assert world.broker.totals.debited.get("buyer1", 0) == credited


@pytest.mark.parametrize("size", [envelope.DEFAULT_MAX_MESSAGE_SIZE + 1, 10 * 1024 * 1024])
def test_oversized_payloads_are_refused_before_decoding(size: int) -> None:
    world, _ = recorded_traffic()
    events = world.net.cores["vendor1"].receive("micropay/v1/in/vendor1/x", b"\x00" * size, 0.0)
    assert isinstance(events[0], MessageRejected)
    assert events[0].error.code == "too-large"
