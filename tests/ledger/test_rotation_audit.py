"""A ledger across a broker key rotation: the audit verifies each part under its own key.

Checkpoints before the rotation verify under the first key, from it on under the new;
the audit trusts either key (each link of the history is signed both ways), refuses a
rotation the key in force did not sign, and refuses a store opened with a retired key.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from msgspec.structs import replace

from broker_ledger.audit import LedgerAudit
from broker_ledger.codec import DEFAULT_CODEC
from broker_ledger.evidence import issue
from broker_ledger.evidence_verify import verify
from broker_ledger.store import EventStore, LedgerError
from broker_ledger.witness import Witnessed, check_witnesses
from protocol.broker_events import BrokerKeyRotated
from protocol.codec import decode_certificate, decode_signed, encode
from protocol.key_rotation import sign_rotation
from protocol.ledger_heads import sign_head
from protocol.messages import KeyRotation, SignedRotation
from tests.ledger.helpers import relink
from tests.ledger.scenario import persist
from tests.support.world import World, make_world, seeded_identity

FIRST = seeded_identity("broker")
SECOND = seeded_identity("broker-2")


@dataclass
class Rotated:
    path: Path
    world: World
    rotation_seq: int
    paid: int


def pay(world: World, buyer: str, units: int) -> int:
    opened = world.buyers[buyer].open_channel("vendor1", 100, world.now)
    world.pump()
    world.buyers[buyer].pay(opened.commitment_id, units, world.now)
    world.pump(0.5)
    world.vendors["vendor1"].redeem_all(world.now)
    world.pump()
    return units


async def build(path: Path) -> Rotated:
    world = make_world(vendors=1, buyers=1)
    store = await EventStore.open(path, "broker", signer=FIRST, checkpoint_every=3)
    try:
        paid = pay(world, "buyer1", 4)
        await persist(world, store)
        from_seq = store.head[0] + 1
        rotation = world.broker.rotate_key(SECOND, from_seq, world.now)
        world.broker.publish_identity(world.now)
        store.use_signer(world.broker.identity)
        await store.append_events([rotation])
        await store.record_key(SECOND.sign_key)
        world.enroll_buyer("buyer2")  # a certificate naming the new key
        world.vendors["vendor1"].publish_offer(world.now)  # retained: buyer2 reads it too
        world.pump()
        paid += pay(world, "buyer1", 3) + pay(world, "buyer2", 5)  # old and new certificates
        await persist(world, store)
    finally:
        await store.close()
    return Rotated(path, world, from_seq, paid)


@pytest.fixture
def rotated(tmp_path: Path) -> Rotated:
    return asyncio.run(build(tmp_path / "ledger.db"))


def test_the_audit_verifies_across_the_rotation_trusting_either_key(rotated: Rotated) -> None:
    for trusted in (FIRST.sign_key, SECOND.sign_key, None):
        report = LedgerAudit(rotated.path, trusted).run()
        assert report.ok, report.findings
        assert report.key_rotations == 1
        assert report.debited == report.credited == rotated.paid
    with sqlite3.connect(rotated.path) as db:
        signed = dict(db.execute("SELECT seq, signature FROM checkpoints").fetchall())
    assert min(signed) < rotated.rotation_seq <= max(signed)  # checkpoints on both sides


def test_certificates_name_the_key_that_signed_them(rotated: Rotated) -> None:
    def issuer_key(name: str) -> bytes:
        signed = rotated.world.buyers[name].certificate
        return decode_certificate(decode_signed(signed).body).issuer_key

    assert (issuer_key("buyer1"), issuer_key("buyer2")) == (b"", SECOND.sign_key)


def test_an_unrelated_key_fails_the_audit(rotated: Rotated) -> None:
    report = LedgerAudit(rotated.path, seeded_identity("stranger").sign_key).run()
    assert not report.passed["key-rotations"]
    assert not report.passed["checkpoint-signatures"]


def test_the_store_refuses_the_retired_key_and_takes_the_new_one(rotated: Rotated) -> None:
    async def reopen() -> int:
        with pytest.raises(LedgerError, match="key in force"):
            await EventStore.open(rotated.path, "broker", signer=FIRST)
        store = await EventStore.open(rotated.path, "broker", signer=rotated.world.broker.identity)
        try:
            return store.keys.generation
        finally:
            await store.close()

    assert asyncio.run(reopen()) == 1


def test_witnessed_heads_from_both_sides_of_the_rotation_check_out(rotated: Rotated) -> None:
    with sqlite3.connect(rotated.path) as db:
        heads = dict(db.execute("SELECT seq, hash FROM events").fetchall())
    before, after = rotated.rotation_seq - 1, rotated.rotation_seq + 1
    witnessed = [
        Witnessed(seq, 0, "", b"", heads[seq], sign_head(key, "broker", seq, heads[seq]).signature)
        for seq, key in ((before, FIRST), (after, SECOND))
    ]
    report = LedgerAudit(rotated.path, FIRST.sign_key).run()
    assert check_witnesses(report, rotated.path, witnessed, FIRST.sign_key) == 2
    assert report.ok, report.findings
    wrong = Witnessed(after, 0, "", b"", heads[after], witnessed[0].signature)
    check_witnesses(report, rotated.path, [wrong], FIRST.sign_key)
    assert not report.passed["witnessed-heads"]


def forge_rotation(path: Path, *, names_first: bool) -> None:
    """Replace the rotation by one to mallory's key, re-link and re-sign as mallory can.

    Mallory does not hold the first key: the statement either names it and carries
    another key's signature, or names (and is signed by) a key the broker never had.
    """
    mallory = seeded_identity("mallory-broker")
    with sqlite3.connect(path) as db:
        seq, body = db.execute(
            "SELECT seq, body FROM events WHERE type = 'broker-key-rotated'"
        ).fetchone()
        event = DEFAULT_CODEC.decode("broker-key-rotated", 1, bytes(body))
        assert isinstance(event, BrokerKeyRotated)
        other = seeded_identity("not-in-force")
        named = FIRST.sign_key if names_first else other.sign_key
        statement = KeyRotation("broker", 1, named, mallory.sign_key, FIRST.agree_key, seq, 0)
        raw = sign_rotation(other, mallory, replace(statement, old_sign_key=other.sign_key))
        signed = SignedRotation(encode(statement), raw.old_signature, raw.new_signature)
        if not names_first:
            signed = raw
        forged = BrokerKeyRotated(
            at=event.at,
            broker="broker",
            sequence=1,
            old_sign_key=named,
            new_sign_key=mallory.sign_key,
            from_seq=seq,
            rotation=encode(signed),
        )
        _, _, new_body = DEFAULT_CODEC.encode(forged)
        db.execute("UPDATE events SET body = ? WHERE seq = ?", (new_body, seq))
        relink(db)
        for checkpoint, head in db.execute(
            "SELECT checkpoints.seq, events.hash FROM checkpoints JOIN events USING (seq)"
            " WHERE checkpoints.seq >= ?",
            (seq,),
        ).fetchall():
            signature = sign_head(mallory, "broker", checkpoint, bytes(head)).signature
            db.execute(
                "UPDATE checkpoints SET signature = ? WHERE seq = ?", (signature, checkpoint)
            )


@pytest.mark.parametrize(
    ("names_first", "finding"),
    [
        (True, "rotation 1 is not signed by the key in force"),
        (False, "the broker key trusted is none of the keys the ledger rotated"),
    ],
)
def test_a_rotation_not_signed_by_the_key_in_force_fails_the_audit(
    rotated: Rotated, names_first: bool, finding: str
) -> None:
    forge_rotation(rotated.path, names_first=names_first)
    report = LedgerAudit(rotated.path, FIRST.sign_key).run()
    assert not report.passed["key-rotations"]
    assert finding in [f.detail for f in report.findings]
    assert not report.passed["checkpoint-signatures"]  # mallory's are not the broker's


def test_dispute_evidence_after_a_rotation_checks_under_either_key(rotated: Rotated) -> None:
    """A bundle signed by the new key about a chain certified under the first key."""
    with sqlite3.connect(rotated.path) as db:
        cid, certificate_at = db.execute(
            "SELECT stream, seq FROM event_log WHERE type = 'commitment-registered' ORDER BY seq"
        ).fetchone()
    assert certificate_at < rotated.rotation_seq
    bundle = issue(rotated.path, rotated.world.broker.identity, "broker", cid[11:], 1)
    assert len(bundle["broker"]["rotations"]) == 1
    for trusted in (FIRST.sign_key, SECOND.sign_key):
        report = verify(bundle, trusted, rotated.path)
        assert report.ok, report.findings
    assert not verify(bundle, seeded_identity("stranger").sign_key).ok
