"""A retired broker signing key, stolen after its rotation, mints nothing anyone accepts.

The retired key still verifies what it signed before the rotation. A certificate it signs
afterwards, for a victim's account and the thief's keys, must not move money: the broker
takes only certificates it issued, vendors and buyers only a retired key's certificates
from before its retirement, and the audit only commitments under certificates the ledger
issued (docs/SECURITY.md row 55).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from broker_ledger.audit import LedgerAudit
from broker_ledger.store import EventStore
from protocol.broker_books import certificate_of
from protocol.broker_events import CommitmentRegistered
from protocol.chain import HashChain
from protocol.codec import decode_signed
from protocol.credentials import commitment_id, issue_certificate, sign_commitment
from protocol.envelope import Auth
from protocol.errors import CertificateError
from protocol.events import MessageRejected
from protocol.messages import Certificate, Commitment, Redeem
from tests.ledger.scenario import persist
from tests.support.world import World, events_of, make_world, seeded_identity

FIRST = seeded_identity("broker")
SECOND = seeded_identity("broker-2")
THIEF = seeded_identity("thief")
DAY_MS = 86_400_000


def forged_certificate(world: World, subject: str, backdated: bool = False) -> bytes:
    """buyer ``subject``'s name, the thief's keys, signed by the retired key after it retired.

    ``backdated``: its ``not_before`` before the rotation, as a thief would write it to pass
    the agents' check; only the broker's record of what it issued catches that.
    """
    now_ms = int(world.now * 1000) - (2 * 3600_000 if backdated else 0)
    certificate = Certificate(
        serial=4242,
        subject=subject,
        role="buyer",
        sign_key=THIEF.sign_key,
        agree_key=THIEF.agree_key,
        credit_limit=10**9,
        currency="EUR",
        not_before=now_ms,
        not_after=now_ms + 10 * DAY_MS,
        issuer="broker",
        issuer_key=FIRST.sign_key,
    )
    return issue_certificate(FIRST, certificate)


def forged_commitment(world: World) -> tuple[bytes, HashChain]:
    chain = HashChain(b"\x07" * 32, 1000)
    now_ms = int(world.now * 1000)
    terms = Commitment(
        "vendor1",
        forged_certificate(world, "buyer1", backdated=True),
        chain.root,
        1000,
        50,
        "EUR",
        now_ms,
        now_ms + DAY_MS,
    )
    signed, _ = sign_commitment(THIEF, terms)
    return signed, chain


async def rotated(path: Path) -> tuple[World, EventStore]:
    world = make_world(vendors=1, buyers=1)
    store = await EventStore.open(path, "broker", signer=FIRST, checkpoint_every=3)
    await persist(world, store)
    rotation = world.broker.rotate_key(SECOND, store.head[0] + 1, world.now)
    world.broker.publish_identity(world.now)
    store.use_signer(world.broker.identity)
    await store.append_events([rotation])
    await store.record_key(SECOND.sign_key)
    world.pump()
    world.now += 3600  # well after the rotation: FIRST is retired, then stolen
    return world, store


def test_a_backdated_forgery_passes_the_agents_key_check_so_the_broker_must_catch_it() -> None:
    world = make_world(vendors=1, buyers=1)
    world.broker.rotate_key(SECOND, 1, world.now)
    world.broker.publish_identity(world.now)
    world.pump()
    world.now += 3600
    keys = world.vendors["vendor1"].broker_keys
    forged = certificate_of(forged_certificate(world, "buyer1", backdated=True))
    assert keys.for_certificate(forged) == FIRST.sign_key  # residual: SECURITY row 55


def test_the_broker_redeems_nothing_under_a_certificate_it_never_issued(tmp_path: Path) -> None:
    async def attack() -> World:
        world, store = await rotated(tmp_path / "ledger.db")
        try:
            signed, chain = forged_commitment(world)
            vendor = world.vendors["vendor1"]
            redeem = Redeem(signed, 1000, chain.word(1000))
            vendor.send("broker", redeem, world.now, auth=Auth.PAIR, key=vendor.broker_key)
            world.pump()
            await persist(world, store)
        finally:
            await store.close()
        return world

    world = asyncio.run(attack())
    assert world.broker.totals.debited.get("buyer1", 0) == 0
    assert world.broker.totals.credited.get("vendor1", 0) == 0
    refused = events_of(world, "broker", MessageRejected)
    assert any("not issued by this broker" in str(r.error) for r in refused)  # not the key
    assert LedgerAudit(tmp_path / "ledger.db", SECOND.sign_key).run().ok


def test_the_audit_refuses_a_commitment_under_a_certificate_the_ledger_never_issued(
    tmp_path: Path,
) -> None:
    async def forge() -> None:
        world, store = await rotated(tmp_path / "ledger.db")
        try:  # whoever writes the ledger file, with the retired key in hand
            signed, _ = forged_commitment(world)
            event = CommitmentRegistered(
                at=int(world.now * 1000),
                commitment_id=commitment_id(decode_signed(signed).body),
                buyer="buyer1",
                vendor="vendor1",
                commitment=signed,
                length=1000,
                unit_value=50,
                reserved=0,
            )
            await store.append_events([event])
        finally:
            await store.close()

    asyncio.run(forge())
    for trusted in (FIRST.sign_key, SECOND.sign_key):
        report = LedgerAudit(tmp_path / "ledger.db", trusted).run()
        assert not report.ok
        assert report.first_failure is not None
        assert "never issued by this ledger" in report.first_failure.detail


def test_agents_refuse_a_retired_key_s_certificate_from_after_its_retirement() -> None:
    world = make_world(vendors=1, buyers=1)
    before = forged_certificate(world, "early")  # signed while FIRST was in force
    world.broker.rotate_key(SECOND, 1, world.now)
    world.broker.publish_identity(world.now)
    world.pump()
    world.now += 3600
    vendor = world.vendors["vendor1"]
    assert vendor.broker_keys.current == SECOND.sign_key
    with pytest.raises(CertificateError, match="issued after its key was retired"):
        vendor.broker_keys.for_certificate(certificate_of(forged_certificate(world, "late")))
    assert vendor.broker_keys.for_certificate(certificate_of(before)) == FIRST.sign_key
