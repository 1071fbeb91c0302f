"""Holes an attacker review found in scrip, each mounted against the cores and refused.

- a revoked buyer spending the scrip it bought before the revocation (docs/SCHEMES.md 3.8,
  rule 4: the scrip names the buyer's certificate, and the vendor keeps the list);
- a vendor depositing scrip it was never shown, rebuilt from the serial with the scrip key
  it shares with the broker (the broker credits only scrip that carries the minted nonce);
- junk deposits growing the ledger (only refusals about real money are recorded, a few
  per serial);
- a mint lost when the buyer dies before storing the broker's answer (the wallet writes
  the order first and asks again after a restart; the broker answers the same request id
  with the same scrip).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import msgspec
import pytest

from agents.daemons.buyer_agent import BuyerError
from agents.daemons.buyer_scrip import ScripPayResult, mint, pay_with_scrip
from protocol.broker_events import BROKER_EVENT_TYPES, DepositRejected, ScripDeposited
from protocol.codec import decode_scrip, decode_tagged_scrip
from protocol.crypto import MacKey
from protocol.envelope import Auth
from protocol.events import BuyerEvent, MessageRejected, PeerError, ScripAccepted, ScripReceived
from protocol.messages import Deposited, Error, Minted, OfferItem, ScripPayment
from protocol.scrip import key_ref, tag_scrip
from protocol.scrip_state import MAX_DEPOSIT_REJECTIONS
from protocol.vendor import VendorTerms
from protocol.vendor_scrip import deposit_corr
from tests.agents.conftest import Broker
from tests.agents.harness import Harness, wait_until
from tests.support.scrip_desk import ScripDesk, scrip_of
from tests.support.scrip_mint import mint_scrip
from tests.support.world import World, events_of, make_world

SHOP = "shop"
AGENT_TERMS = VendorTerms(items=(OfferItem("article", 30),), scrip=True, redeem_interval=0.5)


@pytest.fixture
def world() -> World:
    world = make_world(vendors=0, buyers=2)
    terms = VendorTerms(max_jump=100, items=(OfferItem("article", 5),), scrip=True)
    world.enroll_vendor(SHOP, terms)
    return world


def ledger_events(world: World) -> list[object]:
    return [e for e in world.net.events["broker"] if isinstance(e, BROKER_EVENT_TYPES)]


def pay(world: World, buyer: str, tagged: bytes, price: int) -> None:
    """A ``scrip-pay`` under the buyer's own customer secret, as any client could seal it."""
    core = world.buyers[buyer]
    scrip = decode_scrip(decode_tagged_scrip(tagged).body)
    ref = key_ref(scrip.vendor_serial, scrip.period)
    key = MacKey(core.scrip_secrets[SHOP, ref])
    corr = deposit_corr(scrip.serial, scrip.generation)
    body = ScripPayment(tagged, "", price)
    core.send(SHOP, body, world.now, auth=Auth.SCRIP, key=key, ref=ref, corr=corr)
    world.pump()


# --- 1. a revoked buyer's scrip --------------------------------------------------------------


def test_a_revoked_buyers_scrip_and_its_change_are_refused(world: World) -> None:
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    serial = world.broker.accounts["buyer1"].serial
    assert scrip_of(minted.scrip).buyer_serial == serial  # the broker filled it at minting
    pay(world, "buyer1", minted.scrip, 10)  # before the revocation: taken, change returned
    (accepted,) = events_of(world, SHOP, ScripAccepted)
    change = accepted.change

    world.broker.revoke("buyer1", world.now, "stolen device")
    world.pump()
    assert serial in world.vendors[SHOP].revoked  # the list the vendor keeps for PayWord

    pay(world, "buyer1", change, 10)
    refusal = events_of(world, "buyer1", PeerError)[-1]
    assert (refusal.code, refusal.detail) == ("scrip", "buyer certificate revoked")
    rejected = events_of(world, SHOP, MessageRejected)[-1]
    assert rejected.error.code == "scrip"
    assert len(events_of(world, SHOP, ScripAccepted)) == 1  # nothing more was taken
    record = world.vendors[SHOP].spent_scrip[minted.serial]
    assert (record.generation, record.price) == (0, 10)


# --- 2. a vendor depositing scrip it never saw ------------------------------------------------


def test_a_vendor_cannot_deposit_scrip_it_rebuilt_without_the_nonce(world: World) -> None:
    desk = ScripDesk(world)
    minted = mint_scrip(world, "buyer1", SHOP, 100)  # the buyer never spends it
    held = scrip_of(minted.scrip)
    # The vendor knows every field but the nonce (serials run 1, 2, 3, ...; the buyer, the
    # value and the day it can guess) and tags the rebuilt body with its own scrip key.
    key = desk.vendor_key(SHOP, held.period)
    refusals = []
    for nonce in (bytes(16), os.urandom(16)):
        rebuilt = tag_scrip(msgspec.structs.replace(held, nonce=nonce), key)
        answer = desk.deposit(SHOP, rebuilt, 100, b"")
        assert isinstance(answer, Error)
        refusals.append((answer.code, answer.detail))
        assert not [e for e in desk.events if isinstance(e, BROKER_EVENT_TYPES)]
    # The same refusal as for a serial never minted: probing teaches the vendor nothing.
    never = tag_scrip(msgspec.structs.replace(held, serial=99), key)
    answer = desk.deposit(SHOP, never, 100, b"")
    assert isinstance(answer, Error)
    assert refusals == [
        ("deposit", f"serial {held.serial} was not minted for {SHOP}"),
        ("deposit", f"serial {held.serial} was not minted for {SHOP}"),
    ]
    assert answer.detail == f"serial 99 was not minted for {SHOP}"
    totals = world.broker.totals
    assert (totals.debited["buyer1"], totals.credited[SHOP], totals.reserved["buyer1"]) == (
        0,
        0,
        100,
    )
    assert not [e for e in ledger_events(world) if isinstance(e, ScripDeposited)]
    # Scrip the vendor was shown carries the nonce, and is credited as usual.
    change = desk.pay(SHOP, minted.scrip, 30)
    assert desk.deposit(SHOP, minted.scrip, 30, change) == Deposited(held.serial, 0, 30, 70, change)


# --- 3. junk deposits ---------------------------------------------------------------------------


def test_junk_deposits_are_answered_and_logged_but_grow_no_ledger() -> None:
    world = make_world(vendors=2, buyers=1)
    desk = ScripDesk(world)
    answer = desk.mint("buyer1", "vendor1", 100)
    assert isinstance(answer, Minted)
    gen0, spent = answer.scrip, scrip_of(answer.scrip)
    key = desk.vendor_key("vendor1", spent.period)
    before = len(ledger_events(world))
    junk = [
        ("buyer1", gen0, "only vendors deposit scrip"),  # any account but a vendor
        ("vendor2", gen0, "serial 1 was not minted for vendor2"),  # not its scrip
        ("vendor1", b"\x92\x01", "does not decode"),
        ("vendor1", b"\x00" * 8000, "does not decode"),  # the ~16 KiB a deposit could carry
        ("vendor1", tag_scrip(msgspec.structs.replace(spent, serial=7), key), "not minted"),
        ("vendor1", tag_scrip(msgspec.structs.replace(spent, nonce=bytes(16)), key), "not minted"),
        ("vendor1", tag_scrip(spent, bytes(32)), "tag does not verify"),
    ]
    for sender, presented, words in junk:
        refusal = desk.deposit(sender, presented, 10, b"\x00" * 8000)
        assert isinstance(refusal, Error)
        assert refusal.code == "deposit"  # the vendor's "stop retrying"
        assert words in refusal.detail
        (logged,) = [e for e in desk.events if isinstance(e, MessageRejected)]
        assert logged.error.code == "deposit"  # the shell logs it
    assert len(ledger_events(world)) == before
    totals = world.broker.totals
    assert (totals.debited["buyer1"], totals.credited["vendor1"]) == (0, 0)


def test_refused_claims_on_a_real_serial_are_kept_a_few_times_only() -> None:
    world = make_world(vendors=1, buyers=1)
    desk = ScripDesk(world)
    answer = desk.mint("buyer1", "vendor1", 100)
    assert isinstance(answer, Minted)
    gen0 = answer.scrip
    assert isinstance(desk.deposit("vendor1", gen0, 10, desk.pay("vendor1", gen0, 10)), Deposited)
    kept = 0
    for price in range(11, 31):  # generation 0 claimed again, with another payment each time
        refusal = desk.deposit("vendor1", gen0, price, desk.pay("vendor1", gen0, price))
        assert isinstance(refusal, Error)
        assert refusal.detail == "generation 0 already deposited"
        kept += len([e for e in desk.events if isinstance(e, DepositRejected)])
    assert kept == MAX_DEPOSIT_REJECTIONS  # evidence of the double claim, but bounded
    assert world.broker.scrip.records[1].rejections == MAX_DEPOSIT_REJECTIONS
    assert world.broker.totals.credited["vendor1"] == 10


# --- 4. a mint in flight when the buyer dies ----------------------------------------------------


class WalletCrashError(Exception):
    """The buyer process dies: the batch holding the broker's scrip is never written."""


def wallet_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


@pytest.mark.asyncio
async def test_a_mint_in_flight_when_the_buyer_dies_is_taken_after_a_restart(
    mosquitto: Broker, tmp_path: Path
) -> None:
    harness = Harness(tmp_path, mosquitto)
    daemon = await harness.start_broker()
    broker = daemon.service.core
    await harness.start_vendor(SHOP, AGENT_TERMS)
    await harness.enroll_buyer("buyer1")
    wallet = tmp_path / "buyer1" / "wallet.db"

    buyer = await harness.buyer("buyer1")
    durable = buyer.loop.persist

    async def dies_before_storing_the_scrip(events: list[BuyerEvent]) -> None:
        if any(isinstance(e, ScripReceived) for e in events):
            raise WalletCrashError
        await durable(events)

    buyer.loop.persist = dies_before_storing_the_scrip
    with pytest.raises(BuyerError, match="commit task stopped: WalletCrashError"):
        await buyer.run(lambda: mint(buyer, SHOP, 100, 10))
    # The broker minted and reserved; the wallet holds the order but not the scrip.
    assert broker.scrip.last_serial == 1
    assert broker.totals.reserved["buyer1"] == 100
    assert wallet_rows(wallet, "SELECT COUNT(*) FROM scrip") == [(0,)]
    ((request, vendor, value),) = wallet_rows(
        wallet, "SELECT request, vendor, value FROM scrip_orders"
    )
    assert (request, vendor, value) == (broker.scrip.records[1].request, SHOP, 100)

    # Started again, the wallet asks with the same request id: the broker answers with the
    # same scrip, minting nothing new and reserving nothing more.
    resumed = await harness.buyer("buyer1")
    assert request in resumed.core.mints

    async def answered() -> ScripPayResult:
        await wait_until(lambda: not resumed.core.mints)
        return await pay_with_scrip(resumed, SHOP, 1, 30, mint_value=100, timeout=10)

    result = await resumed.run(answered)
    assert (result.minted, result.paid, result.held) == (0, 30, 70)
    assert broker.scrip.last_serial == 1
    assert broker.totals.reserved["buyer1"] + broker.totals.debited["buyer1"] <= 100
    assert wallet_rows(wallet, "SELECT COUNT(*) FROM scrip_orders") == [(0,)]
    assert wallet_rows(wallet, "SELECT serial, generation, value FROM scrip") == [(1, 1, 70)]
    await harness.stop()
