"""The caches of verified certificates and commitments (``credentials.CERTIFICATES`` and
``COMMITMENTS``): a signature checked once over given bytes is not checked again, anything
else still is, and revocation, validity and role are checked at every use.

Observed through the counters the caches keep (``checks``: verifications run; ``hits``:
verifications saved), never by replacing the verification.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from protocol.broker_events import CommitmentRegistered, RegistrationRefused
from protocol.codec import decode_certificate, decode_signed, encode
from protocol.credentials import (
    CERTIFICATES,
    COMMITMENTS,
    VerifiedCache,
    verify_certificate,
    verify_commitment,
)
from protocol.envelope import Auth
from protocol.errors import CertificateError
from protocol.messages import Register, Signed
from protocol.trusted_keys import TrustedKeys
from tests.support.forgery import FAKE_BROKER, certificate, ms
from tests.support.world import World, make_world, seeded_identity


def empty_caches() -> None:
    CERTIFICATES.clear()
    COMMITMENTS.clear()


@pytest.fixture
def world() -> Iterator[World]:
    """An enrolled world, then empty caches with zeroed counters (they are per process)."""
    world = make_world(vendors=1, buyers=1)
    empty_caches()  # enrolling put the buyer's and the vendor's certificates there
    yield world
    empty_caches()


def buyer_certificate(world: World, name: str, issuer: str = "broker", serial: int = 77) -> bytes:
    """A certificate for ``name``'s keys, valid around the world's clock."""
    now = ms(world.now)
    return certificate(
        seeded_identity(issuer), seeded_identity(name), name, now - 1000, now + 86_400_000,
        serial=serial,
    )  # fmt: skip


def test_a_certificate_is_verified_once_then_served_from_the_cache(world: World) -> None:
    broker = world.broker.info
    signed = buyer_certificate(world, "carol")
    first = verify_certificate(signed, broker.sign_key, broker.id, world.now, role="buyer")
    again = verify_certificate(bytes(signed), broker.sign_key, broker.id, world.now, role="buyer")
    assert first == again
    assert (CERTIFICATES.checks, CERTIFICATES.hits, len(CERTIFICATES)) == (1, 1, 1)


def test_another_certificate_is_verified_and_a_forged_one_refused_every_time(
    world: World,
) -> None:
    broker = world.broker.info
    verify_certificate(buyer_certificate(world, "carol"), broker.sign_key, broker.id, world.now)
    verify_certificate(buyer_certificate(world, "dave"), broker.sign_key, broker.id, world.now)
    assert CERTIFICATES.checks == 2
    # The same fields as carol's, signed by a key that is not the broker's.
    forged = buyer_certificate(world, "carol", issuer=FAKE_BROKER)
    for attempt in range(1, 4):
        with pytest.raises(CertificateError, match="not signed by this broker"):
            verify_certificate(forged, broker.sign_key, broker.id, world.now)
        assert CERTIFICATES.checks == 2 + attempt  # checked again: failures are not kept
    # carol's genuine signature over a body with a higher credit limit.
    genuine = decode_signed(buyer_certificate(world, "carol"))
    raised = msgspec.structs.replace(decode_certificate(genuine.body), credit_limit=10**12)
    spliced = encode(Signed(encode(raised), genuine.signature))
    with pytest.raises(CertificateError, match="not signed by this broker"):
        verify_certificate(spliced, broker.sign_key, broker.id, world.now)
    assert (CERTIFICATES.checks, len(CERTIFICATES)) == (6, 2)


def test_a_cached_certificate_under_another_broker_key_is_checked_again(world: World) -> None:
    broker = world.broker.info
    signed = buyer_certificate(world, "carol")
    verify_certificate(signed, broker.sign_key, broker.id, world.now)
    other = seeded_identity(FAKE_BROKER).sign_key
    with pytest.raises(CertificateError):
        verify_certificate(signed, other, broker.id, world.now)
    assert CERTIFICATES.checks == 2


def test_revocation_validity_and_role_are_checked_at_every_use(world: World) -> None:
    broker = world.broker.info
    signed = buyer_certificate(world, "carol", serial=77)
    verify_certificate(signed, broker.sign_key, broker.id, world.now, role="buyer")
    with pytest.raises(CertificateError, match="revoked"):
        verify_certificate(signed, broker.sign_key, broker.id, world.now, revoked={77})
    with pytest.raises(CertificateError, match="not valid"):
        verify_certificate(signed, broker.sign_key, broker.id, world.now + 2 * 86_400)
    with pytest.raises(CertificateError, match="not a vendor"):
        verify_certificate(signed, broker.sign_key, broker.id, world.now, role="vendor")
    with pytest.raises(CertificateError, match="issued by"):
        verify_certificate(signed, broker.sign_key, "another-broker", world.now)
    assert (CERTIFICATES.checks, CERTIFICATES.hits) == (1, 4)  # the signature, once


def test_a_vendor_refuses_a_commitment_under_a_revoked_certificate_it_verified_before(
    world: World,
) -> None:
    buyer = world.buyers["buyer1"]
    broker = world.broker.info
    opened = buyer.open_channel("vendor1", 10, world.now)
    signed = buyer.channels[opened.commitment_id].commitment
    serial = decode_certificate(decode_signed(buyer.certificate).body).serial
    verify_commitment(signed, broker.sign_key, broker.id, world.now, "vendor1")
    with pytest.raises(CertificateError, match="revoked"):
        verify_commitment(signed, broker.sign_key, broker.id, world.now, "vendor1", {serial})
    assert (COMMITMENTS.checks, COMMITMENTS.hits) == (1, 1)
    assert CERTIFICATES.checks == 1


def register(world: World, signed_commitment: bytes, cid: bytes) -> list[object]:
    """vendor1 asks the broker to approve a commitment (on-line registration)."""
    vendor = world.vendors["vendor1"]
    vendor.send(
        "broker",
        Register(signed_commitment),
        world.now,
        auth=Auth.PAIR,
        key=vendor.broker_key,
        corr=cid[:16],
    )
    (out,) = vendor.data_to_send()
    return list(world.net.inject("broker", out.topic, out.payload, world.now))


def test_the_broker_checks_a_buyers_certificate_once_but_still_refuses_it_once_revoked(
    world: World,
) -> None:
    buyer = world.buyers["buyer1"]
    chains = []
    for _ in range(3):
        opened = buyer.open_channel("vendor1", 10, world.now)
        buyer.data_to_send()  # the commit to the vendor: not delivered
        chains.append((buyer.channels[opened.commitment_id].commitment, opened.commitment_id))
    for signed, cid in chains[:2]:
        assert any(isinstance(e, CommitmentRegistered) for e in register(world, signed, cid))
    assert (CERTIFICATES.checks, COMMITMENTS.checks) == (1, 2)  # one buyer, two chains

    world.broker.revoke("buyer1", world.now)
    events = register(world, *chains[2])
    refused = [e for e in events if isinstance(e, RegistrationRefused)]
    assert [e.reason for e in refused] == ["certificate revoked"]
    assert not any(isinstance(e, CommitmentRegistered) for e in events)
    assert (CERTIFICATES.checks, COMMITMENTS.checks) == (1, 3)  # the revocation, not a check


def test_the_cache_is_a_bounded_lru() -> None:
    decoded: list[bytes] = []

    def check(signed: bytes, keys: TrustedKeys) -> bytes:
        decoded.append(signed)
        return signed + keys.current

    cache: VerifiedCache[bytes] = VerifiedCache(check, maxsize=2)
    assert [cache.get(b"a", b"k"), cache.get(b"b", b"k"), cache.get(b"a", b"k")] == [
        b"ak",
        b"bk",
        b"ak",
    ]
    cache.get(b"c", b"k")  # evicts b, the least recently used
    assert len(cache) == 2
    cache.get(b"a", b"k")
    cache.get(b"b", b"k")
    assert decoded == [b"a", b"b", b"c", b"b"]
    assert (cache.checks, cache.hits) == (4, 2)
