"""Four holes a second review of scrip and ``--online-above`` found, each held shut.

Each test asserts the safe behaviour; the hole it describes is closed (SECURITY.md rows
71, 76, 75 and 74):

1. On-line scrip: a lost ``deposited`` makes the vendor's own retry a ``repeat``, and a
   repeat is never served: the buyer is charged (and told it was paid), never served.
2. ``--online-above``: chains waiting for registration are not in the vendor's exposure,
   so small chains committed meanwhile take one buyer to twice its limit at one vendor.
3. On-line scrip: the buyer drops a payment pending at the scrip's expiry while the
   vendor keeps depositing it until the deadline: debited, never answered.
4. A vendor restored from a backup never deposits its confirmed records again, so it
   accepts a generation the broker had credited after the backup (a double spend served).
"""

from __future__ import annotations

import copy

from protocol.broker_events import DepositRejected, ScripDeposited
from protocol.crypto import MacKey
from protocol.envelope import Auth
from protocol.events import (
    Outgoing,
    ScripAccepted,
    ScripExpired,
    ScripReceived,
    ScripRepeatAnswered,
    ScripSettled,
)
from protocol.messages import OfferItem, ScripPayment
from protocol.vendor import VendorCore, VendorTerms
from protocol.vendor_scrip import deposit_corr
from tests.support.scrip_mint import deliver, mint_scrip, take_off_the_wire
from tests.support.world import World, events_of, make_world, seeded_identity

SHOP = "shop"


def scrip_world(*, online: bool) -> World:
    world = make_world(vendors=0, buyers=1)
    terms = VendorTerms(
        max_jump=100, items=(OfferItem("article", 5),), scrip=True, scrip_online=online
    )
    world.enroll_vendor(SHOP, terms)
    return world


def held_payment(world: World, price: int) -> tuple[ScripReceived, Outgoing]:
    """Scrip minted, and the buyer's payment of ``price`` taken off the wire."""
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    world.buyers["buyer1"].pay_scrip(SHOP, price, world.now)
    (payment,) = take_off_the_wire(world, "buyer1", "scrip-pay")
    return minted, payment


# --- 1. on-line scrip: a lost ``deposited`` turns the vendor's own retry into a "repeat" --------


def test_online_a_lost_deposited_still_serves_the_payment_once() -> None:
    """Charged, never served, with no crash anywhere.

    Attack / fault: the on-line vendor deposits a payment; the broker credits it
    (``scrip-deposited`` is durable) but its ``deposited`` never reaches the vendor (the
    broker daemon dies between the commit and the publish, or the MQTT message is lost;
    anyone able to drop one message on the path can cause it). After 5 s the vendor resends
    the same deposit (or the buyer's retry triggers it). The broker has credited it, so it
    answers with ``repeat`` set, and ``VendorScrip._online_answer`` treats every repeat as
    "a replica or an earlier process served it": it answers the buyer with change and emits
    ``ScripRepeatAnswered``, never ``ScripAccepted``. Nobody ever served the payment: the
    buyer is debited 30 and gets nothing. docs/SCHEMES.md 3.9 claims that a late answer
    "serves the buyer ... once"; only a vendor *crash* was accepted as "at most once".

    Safe behaviour: the payment this process holds pending and has not served is served
    exactly once, whether the broker's first answer arrives or a retry's repeat does.
    """
    world = scrip_world(online=True)
    minted, payment = held_payment(world, 30)
    deliver(world, payment)
    (deposit,) = take_off_the_wire(world, SHOP, "deposit")
    deliver(world, deposit)  # the broker credits the vendor ...
    assert len(events_of(world, world.broker.account, ScripDeposited)) == 1
    world.broker.data_to_send()  # ... and its ``deposited`` is lost on the way
    world.now += 5  # the vendor's on-line timeout: it tells the buyer to retry, asks again
    world.vendors[SHOP].handle_timer(world.now)
    world.pump()
    world.buyers["buyer1"].resume_scrip(world.now)  # and the buyer retries, as it should
    world.pump()

    assert world.broker.totals.debited["buyer1"] == 30  # the buyer paid
    (paid,) = events_of(world, "buyer1", ScripSettled)
    assert paid.serial == minted.serial
    repeats = events_of(world, SHOP, ScripRepeatAnswered)
    served = events_of(world, SHOP, ScripAccepted)
    # Was: served == [] and one ScripRepeatAnswered: charged and never served.
    assert len(served) == 1, f"paid 30, served {len(served)} times ({len(repeats)} 'repeats')"


# --- 2. PayWord --online-above T: the vendor's credit check skips chains being registered ------


def kiosk_world(online_above: int, credit_limit: int) -> World:
    world = make_world(vendors=0, buyers=0)
    terms = VendorTerms(
        unit_value=2, max_length=1000, max_jump=50, online=True, online_above=online_above
    )
    world.enroll_vendor("kiosk", terms)
    world.enroll_buyer("alice", credit_limit=credit_limit)
    return world


def commit(world: World, length: int) -> bytes:
    """alice commits a chain of ``length`` (worth ``2 * length``); it reaches the vendor."""
    opened = world.buyers["alice"].open_channel("kiosk", length, world.now)
    for out in world.buyers["alice"].data_to_send():
        world.net.inject("kiosk", out.topic, out.payload, world.now)
    return opened.commitment_id


def test_online_above_small_chains_during_a_registration_stay_within_the_credit_limit() -> None:
    """Exposure twice the buyer's limit at one vendor, by racing the registration.

    Attack: with ``--online-above 100`` and a credit limit L = 2000, alice commits one
    chain worth L (above the threshold, so ``VendorCore._commit`` parks it in ``_pending``
    and sends ``register``). While the broker's answer is on its way she commits 20 small
    chains worth 100 each. The vendor's credit check (``self.exposure``) counts only
    installed chains, not ``_pending`` ones, so each small chain passes and is taken at
    once, off-line. Then the broker registers the big chain (it knows nothing of the
    off-line chains, so ``debited + reserved + L <= L`` holds) and ``_registered`` installs
    it with no second credit check. The vendor now holds chains worth 2L from a buyer whose
    limit is L and serves 2L. At redemption the broker credits the vendor anyway
    (``_check_credit`` only records ``credit-limit-exceeded`` afterwards), so the buyer ends
    owing 2L against a limit of L: the operator carries credit the limit was meant to
    refuse. Off-line PayWord bounds one vendor's exposure to one buyer by L; SCHEMES.md §1
    promises the small chains are "as exposed as off-line PayWord", not more.

    Safe behaviour: the vendor counts chains awaiting registration in the exposure (or
    checks the credit again when the registration arrives), so it never holds more than L.
    """
    world = kiosk_world(online_above=100, credit_limit=2000)
    vendor = world.vendors["kiosk"]
    big = commit(world, 1000)  # worth 2000 = L: waits for the broker
    (register,) = take_off_the_wire(world, "kiosk", "register")  # answer not back yet
    taken = 0
    for _ in range(20):  # worth 100 each: at the threshold, taken off-line at once
        try:
            commit(world, 50)
        except Exception:  # noqa: BLE001 - the buyer core may stop her; count what got in
            break
        taken += 1
    world.pump()
    deliver(world, register)
    world.pump()
    assert big in vendor.chains  # the broker approved it: it is within her limit alone
    exposure = vendor.exposure("alice", world.now)
    # Was: 20 small chains were taken and exposure == 4000, twice the limit.
    assert exposure <= 2000, f"{taken} small chains taken during registration: exposure {exposure}"


# --- 3. on-line scrip: the buyer drops a pending payment at expiry, the vendor keeps it ---------


def test_online_a_payment_pending_at_expiry_is_not_forgotten_by_the_buyer() -> None:
    """The buyer writes scrip off as expired (returned) while the broker debits it.

    Fault / attack: the buyer pays an on-line vendor shortly before the scrip expires, and
    the broker is slow or unreachable (or someone on the path delays the vendor's
    ``deposit``). The vendor answers ``broker unreachable`` and, per 3.9, keeps the payment
    pending and keeps depositing it until the serial's deadline (expires + 2 days). The
    buyer, however, drops held scrip AND its pending payment at ``expires``
    (``BuyerScrip.scrip_due``: ``ScripExpired``, wallet rows deleted), believing the value
    returns to it. When the broker comes back it credits the vendor (deposits are taken
    until the deadline), the vendor serves, and its ``scrip-paid`` reaches a buyer that no
    longer knows the payment: the buyer is debited, never answered (no change, no
    ``ScripSettled``), and its wallet reports the scrip as expired with its full value.

    Safe behaviour: a payment the buyer still holds pending is kept (and resent) until the
    serial's deadline, so the vendor's late answer settles it; or the vendor stops
    depositing an on-line payment the buyer has been told to retry once the scrip expires.
    """
    world = scrip_world(online=True)
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer, vendor = world.buyers["buyer1"], world.vendors[SHOP]
    world.now = minted.expires / 1000 - 2  # two seconds before it expires
    buyer.pay_scrip(SHOP, 30, world.now)
    (payment,) = take_off_the_wire(world, "buyer1", "scrip-pay")
    deliver(world, payment)
    take_off_the_wire(world, SHOP, "deposit")  # the broker is unreachable
    world.now += 5  # the vendor's timeout: "broker unreachable", the payment stays pending
    vendor.handle_timer(world.now)
    take_off_the_wire(world, SHOP, "deposit")
    world.pump()
    buyer.handle_timer(world.now)  # past expiry: the buyer used to write the scrip off here
    world.pump()
    assert events_of(world, "buyer1", ScripExpired) == []  # kept: its payment is pending
    world.now += 300  # the broker is back; the vendor's next retry reaches it
    vendor.handle_timer(world.now)
    world.pump()

    debited = world.broker.totals.debited["buyer1"]
    settled = events_of(world, "buyer1", ScripSettled)
    # Was: debited == 30, the vendor served it, and the buyer has no ScripSettled.
    assert debited == 0 or len(settled) == 1, (
        f"buyer debited {debited}, served {len(events_of(world, SHOP, ScripAccepted))},"
        f" settled at the buyer {len(settled)}"
    )


# --- 4. a vendor restored from a backup: confirmed records are never deposited again ----------


def test_a_restored_vendor_learns_generations_credited_after_its_backup() -> None:
    """A double spend served after a restore, of a generation the broker knows is spent.

    docs/SCHEMES.md 3.9: "after a restart, before it accepts scrip, it deposits every
    record it holds and takes the broker's credited generation per serial as spent". The
    code deposits only records with ``generation > confirmed`` (``ScripRecord.owes_deposit``)
    and does not wait for anything before taking payments.

    Attack: the vendor's store is backed up while serial S's record is generation 0,
    confirmed by the broker. The buyer then pays with generation 1 (its change); the vendor
    records and deposits it, the broker credits it. The vendor is restored from the backup
    (disk loss). Its record of S says generation 0, confirmed, so nothing is deposited and
    it never learns that generation 1 is spent. The buyer spends generation 1 again, for
    its whole value: the vendor serves it, and the broker refuses the deposit for good
    ("generation already deposited"). The vendor served 70 for nothing, though the broker
    held the answer all along (an identical replay is served twice instead).

    Safe behaviour: a restarted vendor deposits (or asks about) every record it holds, not
    only unconfirmed ones, and refuses payments on a serial until the broker answered.
    """
    world = scrip_world(online=False)
    vendor, buyer = world.vendors[SHOP], world.buyers["buyer1"]
    minted = mint_scrip(world, "buyer1", SHOP, 100)
    buyer.pay_scrip(SHOP, 30, world.now)  # generation 0
    world.pump()
    world.now += vendor.terms.redeem_interval
    vendor.handle_timer(world.now)
    world.pump()
    backup = copy.copy(vendor.spent_scrip[minted.serial])  # the store, backed up
    assert (backup.generation, backup.confirmed) == (0, 0)

    (gen1,) = [e for e in events_of(world, "buyer1", ScripReceived) if e.generation == 1]
    buyer.pay_scrip(SHOP, 20, world.now)  # generation 1, credited after the backup
    world.pump()
    world.now += vendor.terms.redeem_interval
    vendor.handle_timer(world.now)
    world.pump()
    assert world.broker.totals.credited[SHOP] == 50

    world.now += 1  # the disk is lost; the vendor comes back from the backup
    again = VendorCore(SHOP, seeded_identity(SHOP), world.broker.info, vendor.terms)
    again.restore_certificate(vendor.certificate, world.now)
    again.restore_scrip(copy.copy(backup), world.now)
    world.net.attach(again, world.now)
    world.vendors[SHOP] = again
    again.handle_timer(world.now)  # whatever a restarted vendor sends first, it is answered
    world.pump()

    served_before = len(events_of(world, SHOP, ScripAccepted))
    # The buyer spends generation 1 again, all of it (a hand-made payment on its own stream).
    buyer.send(
        SHOP,
        ScripPayment(gen1.scrip, "", 70),
        world.now,
        auth=Auth.SCRIP,
        key=MacKey(gen1.secret),
        ref=gen1.ref,
        corr=deposit_corr(minted.serial, 1),
    )
    world.pump()
    world.now += again.terms.redeem_interval
    again.handle_timer(world.now)
    world.pump()
    served_again = events_of(world, SHOP, ScripAccepted)[served_before:]
    refused = events_of(world, world.broker.account, DepositRejected)
    # Was: served_again has the 70 payment, and the broker refused its deposit for good.
    assert not served_again, (
        f"restored vendor served {[(e.generation, e.price) for e in served_again]};"
        f" broker refusals: {[e.reason for e in refused]}"
    )
