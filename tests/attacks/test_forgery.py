"""Forged, expired and revoked credentials; clock games around expiry; a stolen device key."""

from __future__ import annotations

import asyncio
import time

import pytest

from agents.daemons.operator_client import operator_request
from agents.daemons.operator_protocol import Revoke, Revoked
from protocol.crypto import Identity
from protocol.endpoint import Endpoint
from protocol.messages import Commitment
from protocol.vendor import VendorTerms
from tests.agents.harness import wait_until
from tests.attacks.rogue import (
    AttackHarness,
    buyer_core,
    commit_as,
    offered,
    rogue,
    send_commitment,
    wallet_core,
)
from tests.support.forgery import certificate, commitment, ms

DAY = 86_400.0


@pytest.mark.asyncio
async def test_forged_certificate_is_refused(harness: AttackHarness) -> None:
    vendor1 = await harness.start_vendor("vendor1")
    mallory = Identity.generate()
    fake_broker = Identity.generate()  # signs as "broker", but with the wrong key
    now = time.time()
    forged = certificate(fake_broker, mallory, "mallory", ms(now - DAY), ms(now + DAY))
    agree = vendor1.core.identity.agree_key
    async with rogue(harness.mosquitto, "mallory") as attacker:
        await commit_as(
            attacker, mallory, Endpoint("mallory", mallory), agree,
            commitment("vendor1", forged, ms(now), ms(now + 3600)), now,
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
            commitment("vendor1", victim.certificate, ms(now), ms(now + 3600)), now,
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
    expired = certificate(broker_identity, holder, "buyer2", ms(now - 3 * DAY), ms(now - DAY))
    agree = vendor1.core.identity.agree_key
    sender: Endpoint[object] = Endpoint("buyer2", holder)
    async with rogue(harness.mosquitto, "buyer2") as attacker:
        # issued today: the certificate was not valid then
        today = commitment("vendor1", expired, ms(now), ms(now + 60))
        await commit_as(attacker, holder, sender, agree, today, now)
        # backdated into the certificate's life, and so already expired itself
        backdated = commitment("vendor1", expired, ms(now - 2 * DAY), ms(now - DAY))
        await commit_as(attacker, holder, sender, agree, backdated, now)
        # backdated, but claiming to live on past its certificate
        outliving = commitment("vendor1", expired, ms(now - 2 * DAY), ms(now + DAY))
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
