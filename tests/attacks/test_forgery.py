"""Forged, expired and revoked credentials; clock games around expiry; a stolen device key."""

from __future__ import annotations

import asyncio
import time

import pytest

from agents.daemons.operator_client import operator_request
from agents.daemons.operator_protocol import Revoke, Revoked
from protocol.credentials import issue_certificate, sign_commitment
from protocol.crypto import Identity, MacKey, chain_key
from protocol.endpoint import Endpoint
from protocol.envelope import Auth
from protocol.messages import Certificate, Commit, Commitment, Payment
from protocol.vendor import VendorTerms
from tests.agents.harness import wait_until
from tests.attacks.rogue import (
    AttackHarness,
    Rogue,
    buyer_core,
    offered,
    rogue,
    send_commitment,
    wallet_core,
)

DAY = 86_400.0


def certificate_for(
    issuer: Identity, holder: Identity, subject: str, not_before: float, not_after: float
) -> bytes:
    """A buyer certificate with the given validity, signed by ``issuer``."""
    body = Certificate(
        serial=9_999,
        subject=subject,
        role="buyer",
        sign_key=holder.sign_key,
        agree_key=holder.agree_key,
        credit_limit=10**9,
        currency="EUR",
        not_before=int(not_before * 1000),
        not_after=int(not_after * 1000),
        issuer="broker",
    )
    return issue_certificate(issuer, body)


async def commit_as(  # noqa: PLR0913 - who signs, who sends, what, to whom
    attacker: Rogue,
    signer: Identity,
    sender: Endpoint,
    vendor_agree_key: bytes,
    commitment: Commitment,
    now: float,
) -> bytes:
    """Sign ``commitment`` with ``signer``; ``sender`` seals and the attacker publishes it."""
    signed, cid = sign_commitment(signer, commitment)
    key = MacKey(chain_key(sender.identity, vendor_agree_key, sender.account, "vendor1", cid))
    sender.send("vendor1", Commit(signed), now, auth=Auth.CHAIN, key=key, ref=cid)
    sender.send(
        "vendor1", Payment(cid, 1, bytes(32)), now, auth=Auth.CHAIN, key=key, ref=cid
    )  # and a payment on it
    for message in sender.data_to_send():
        await attacker.publish(message.topic, message.payload)
    return cid


def commitment(certificate: bytes, issued_at: float, not_after: float) -> Commitment:
    return Commitment(
        "vendor1", certificate, bytes(32), 100, 1, "EUR", int(issued_at * 1000),
        int(not_after * 1000),
    )  # fmt: skip


@pytest.mark.asyncio
async def test_forged_certificate_is_refused(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    mallory = Identity.generate()
    fake_broker = Identity.generate()  # signs as "broker", but with the wrong key
    now = time.time()
    forged = certificate_for(fake_broker, mallory, "mallory", now - DAY, now + DAY)
    agree = vendor1.core.identity.agree_key
    async with rogue(harness.mosquitto, "mallory") as attacker:
        await commit_as(
            attacker, mallory, Endpoint("mallory", mallory), agree,
            commitment(forged, now, now + 3600), now,
        )  # fmt: skip
        await wait_until(lambda: vendor1.loop.rejected == 2)
    assert vendor1.loop.rejections == {"certificate": 1, "auth": 1}
    assert vendor1.counters.amount == 0
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_commitment_not_signed_by_the_certified_buyer_is_refused(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    victim = await buyer_core(harness, "buyer1")  # mallory copies its public certificate
    mallory = Identity.generate()
    now = time.time()
    agree = vendor1.core.identity.agree_key
    async with rogue(harness.mosquitto, "mallory") as attacker:
        await commit_as(
            attacker, mallory, Endpoint("mallory", mallory), agree,
            commitment(victim.certificate, now, now + 3600), now,
        )  # fmt: skip
        await wait_until(lambda: vendor1.loop.rejected == 2)
    assert vendor1.loop.rejections == {"commitment": 1, "auth": 1}
    assert vendor1.counters.amount == 0
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_expired_certificate_and_backdated_commitments_are_refused(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    assert harness.daemon is not None
    broker_identity = harness.daemon.service.core.identity
    holder = Identity.generate()
    now = time.time()
    # A genuine certificate that expired yesterday, still in the holder's hands.
    expired = certificate_for(broker_identity, holder, "buyer2", now - 3 * DAY, now - DAY)
    agree = vendor1.core.identity.agree_key
    sender = Endpoint("buyer2", holder)
    async with rogue(harness.mosquitto, "buyer2") as attacker:
        # issued today: the certificate was not valid then
        await commit_as(attacker, holder, sender, agree, commitment(expired, now, now + 60), now)
        # backdated into the certificate's life, and so already expired itself
        backdated = commitment(expired, now - 2 * DAY, now - DAY)
        await commit_as(attacker, holder, sender, agree, backdated, now)
        # backdated, but claiming to live on past its certificate
        outliving = commitment(expired, now - 2 * DAY, now + DAY)
        await commit_as(attacker, holder, sender, agree, outliving, now)
        await wait_until(lambda: vendor1.loop.rejected == 6)
    assert vendor1.loop.rejections == {"certificate": 1, "commitment": 2, "auth": 3}
    assert vendor1.counters.amount == 0
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_paying_past_a_commitments_expiry_fails_whatever_the_envelope_says(
    harness: AttackHarness,
) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    core = await buyer_core(harness, "buyer1")
    async with rogue(harness.mosquitto, "buyer1", core) as buyer:
        await offered(buyer, "vendor1")
        opened = core.open_channel("vendor1", 100, time.time(), lifetime=1.0)
        core.pay(opened.commitment_id, 5, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.counters.amount == 5)
        await asyncio.sleep(1.2)
        # The envelope claims a time before expiry (within the skew allowance); the vendor
        # judges expiry by its own clock.
        core.pay(opened.commitment_id, 5, time.time() - 60)
        # A fresh commitment that claims to outlive the buyer's certificate.
        assert core.certified is not None
        outliving = Commitment(
            "vendor1", core.certificate, bytes(32), 10, 1, "EUR", int(time.time() * 1000),
            core.certified.not_after + 1,
        )  # fmt: skip
        send_commitment(core, "vendor1", outliving, time.time())
        await buyer.flush()
        await wait_until(lambda: vendor1.loop.rejected == 2)
    assert vendor1.loop.rejections == {"payment": 1, "commitment": 1}
    assert vendor1.counters.amount == 5
    await harness.redeem("vendor1")  # paywords taken before expiry are still redeemable
    assert harness.credited("vendor1") == harness.debited("buyer1") == 5
    await harness.serving("vendor1")


@pytest.mark.asyncio
async def test_revocation_reaches_vendors_and_stops_a_stolen_key(
    harness: AttackHarness,
) -> None:
    slow = VendorTerms(redeem_interval=3600)  # no redemption tells the broker anything
    vendor1 = await harness.start_vendor("vendor1", slow)
    vendor2 = await harness.start_vendor("vendor2", slow)
    await buyer_core(harness, "buyer1", credit_limit=100)
    thief = await wallet_core(harness, "buyer1")  # the device's wallet, copied
    assert thief.certified is not None
    serial = thief.certified.serial
    async with rogue(harness.mosquitto, "buyer1", thief) as stolen:
        await offered(stolen, "vendor1", "vendor2")
        chains = {v: thief.open_channel(v, 100, time.time()).commitment_id for v in harness.vendors}
        for cid in chains.values():
            thief.pay(cid, 30, time.time())
        await stolen.flush()
        await wait_until(lambda: vendor1.counters.amount == vendor2.counters.amount == 30)

        # The owner reports the theft; the operator revokes; the signed list is pushed.
        answer = await operator_request(
            harness.root / "broker", Revoke(account="buyer1", reason="stolen")
        )
        assert isinstance(answer, Revoked), answer
        await wait_until(lambda: serial in vendor1.core.revoked and serial in vendor2.core.revoked)
        for cid in chains.values():
            thief.pay(cid, 30, time.time())
        thief.open_channel("vendor2", 10, time.time())
        await stolen.flush()
        await wait_until(lambda: vendor1.loop.rejected + vendor2.loop.rejected == 3)
    assert vendor1.loop.rejections == {"payment": 1}
    assert vendor2.loop.rejections == {"payment": 1, "certificate": 1}
    await harness.redeem("vendor1")
    await harness.redeem("vendor2")
    # The loss is what was spent before the revocation: at most the limit at each vendor.
    assert harness.debited("buyer1") == 60
    assert harness.credited("vendor1") + harness.credited("vendor2") == 60
    await harness.broker_serving("vendor2")
