"""Hostile input at every untrusted surface: the decoders and each core's ``receive``.

Random bytes, mutations of envelopes captured from a real flow, and above all hostile
bodies sealed with a correct MAC or signature, so the code after authentication sees them.
Decoders may only raise the protocol's own errors; ``receive`` never raises, refuses with a
protocol error, and a refused message leaves the money where it was (``fuzz/surfaces.py``
holds the rig and the invariants; ``make fuzz`` runs the same surfaces for much longer).
"""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.surfaces import (
    DEPTHS,
    INVALID,
    KINDS,
    ODDITIES,
    UNDECODABLE,
    ByteSource,
    Forge,
    Rig,
    decodes,
    encode,
    nested,
)
from protocol import codec
from protocol.errors import MalformedMessageError, MessageTooLargeError
from protocol.events import MessageRejected
from protocol.messages import MESSAGE_TYPES
from tests.fuzz.conftest import DrawSource, shared_rig

FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
STATEFUL = settings(FAST, max_examples=200)


# --- decoders ------------------------------------------------------------------------------


@FAST
@given(raw=st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_protocol_errors(raw: bytes) -> None:
    shared_rig().decode_everywhere(raw)


@FAST
@given(data=st.data())
def test_hostile_messagepack_decodes_or_raises_protocol_errors(data: st.DataObject) -> None:
    rig = shared_rig()
    forge = Forge(rig, DrawSource(data))
    stream = data.draw(st.sampled_from(rig.streams))
    kind = data.draw(st.sampled_from(KINDS))
    rig.decode_everywhere(encode(forge.value()))
    rig.decode_everywhere(forge.body(kind, stream))
    rig.decode_everywhere(forge.certificate())
    rig.decode_everywhere(forge.commitment("vendor1")[0])


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("opener", [b"\x91", b"\x81\xc0", b"\xdc\x00\x01", b"\xdd\x00\x00\x00\x01"])
def test_deep_nesting_is_refused_by_every_decoder(depth: int, opener: bytes) -> None:
    blob = nested(depth, opener)
    for kind in KINDS:
        with pytest.raises(MalformedMessageError):
            codec.decode_body(kind, blob)
        with pytest.raises(MalformedMessageError):
            codec.decode_body(kind, encode([b"", 1, "EUR"]) + blob)
    shared_rig().decode_everywhere(blob)


@pytest.mark.parametrize("oddity", ODDITIES)
def test_length_bombs_and_odd_encodings_in_any_field_are_refused(oddity: bytes) -> None:
    rig = shared_rig()
    tracemalloc.start()
    try:
        for kind, fields in rig.templates.items():
            for position in range(len(fields)):
                head = b"".join(encode(field) for field in fields[:position])
                body = bytes([0x90 | len(fields)]) + head + oddity
                # A valid if needlessly wide encoding may end a body; nothing else may.
                if oddity in INVALID or position < len(fields) - 1:
                    assert not decodes(kind, body)
        rig.decode_everywhere(oddity)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, "a claimed length was allocated before the data was there"


# --- every core: unauthenticated bytes -----------------------------------------------------


@FAST
@given(target=st.integers(0, 2**16), payload=st.binary(max_size=1024))
def test_random_bytes_on_any_topic_are_refused(target: int, payload: bytes) -> None:
    shared_rig().raw(target, payload)


@FAST
@given(data=st.data())
def test_mutated_real_envelopes_are_refused(data: st.DataObject) -> None:
    shared_rig().mutated(DrawSource(data))


@pytest.mark.parametrize("auth", range(5))
def test_every_oddity_as_a_whole_envelope_is_refused(auth: int) -> None:
    rig = shared_rig()
    for oddity in (*ODDITIES, nested(60_000), nested(10**5)):
        for target in range(len(rig.raw_targets)):
            rig.raw(target, bytes([auth]) + oddity + bytes(64))


# --- every core: authentic envelopes around hostile bodies ---------------------------------


@STATEFUL
@given(
    stream=st.integers(0, 255),
    kind=st.integers(0, 255),
    body=st.one_of(st.binary(max_size=700), st.sampled_from(ODDITIES)),
)
def test_sealed_raw_bodies_are_refused_or_handled(stream: int, kind: int, body: bytes) -> None:
    Rig().sealed(stream, kind, body)


@STATEFUL
@given(data=st.data())
def test_forged_bodies_behind_valid_macs_keep_the_invariants(data: st.DataObject) -> None:
    rig = Rig()
    source = DrawSource(data)
    for _ in range(data.draw(st.integers(1, 4))):
        rig.tick(0.5)
        rig.forged(source)


def test_deep_nesting_sealed_into_every_stream_is_refused() -> None:
    rig = Rig()
    for stream in rig.streams:
        for kind in {*stream.natural, "pay", "nonsense"}:
            for depth in (1_000, 60_000, 10**5):
                rig.deliver_sealed(stream, kind, nested(depth), ByteSource(b""), 0)
    assert UNDECODABLE.codes >= {MessageTooLargeError.code, MalformedMessageError.code}


def test_the_rig_reaches_every_core_and_message_type() -> None:
    rig = Rig()
    assert {s.recipient for s in rig.streams} == set(rig.world.net.cores)
    assert set(rig.templates) == set(MESSAGE_TYPES)
    assert {envelope_type for s in rig.streams for envelope_type in s.natural} >= {
        "pay", "commit", "redeem", "register", "enroll", "enrolled", "offer", "revocations",
    }  # fmt: skip
    events = rig.world.net.cores["vendor1"].receive("micropay/v1/in/vendor1/x", b"", rig.now)
    assert isinstance(events[0], MessageRejected)
