"""Signed ledger heads the cores keep and judge, and a vendor store or wallet found behind
what its peer holds (a restore): the cores say so and never serve paid paywords again."""

from __future__ import annotations

from protocol import topics
from protocol.envelope import Auth, seal
from protocol.errors import AuthenticationError, PaymentError
from protocol.events import LedgerHeadWitnessed, PaywordSpent, StateBehind
from protocol.ledger_heads import HeldHead, LedgerView
from protocol.messages import LedgerHead, Receipt, Redeemed
from tests.attacks.cores import open_paid_channel, rejected_with, send_payment, vendor_total
from tests.support.world import World, events_of, seeded_identity


def test_agents_keep_signed_ledger_heads_and_notice_a_regression(world: World) -> None:
    world.broker.publish_ledger_head(2, b"\x03" * 32, world.now - 1)  # (delivered late)
    world.broker.publish_ledger_head(5, b"\x01" * 32, world.now)
    world.pump()
    world.broker.publish_ledger_head(3, b"\x02" * 32, world.now + 1)  # the ledger went back
    world.pump()
    for agent in ("vendor1", "buyer1"):
        heads = events_of(world, agent, LedgerHeadWitnessed)
        assert [(h.seq, h.regressed) for h in heads] == [(2, False), (5, False), (3, True)]
        assert all(h.topic == topics.public("broker", "ledger-head") for h in heads)
    # A head signed by anyone but the broker is refused, and not kept.
    impostor = seal(
        topics.public("broker", "ledger-head"),
        LedgerHead("broker", 9, bytes(32), 0),
        auth=Auth.SIGNED, sender="broker", recipient="*", counter=1, now=world.now,
        signer=seeded_identity("impostor"),
    )  # fmt: skip
    events = world.net.inject(
        "vendor1", topics.public("broker", "ledger-head"), impostor, world.now
    )
    assert rejected_with(list(events), AuthenticationError)
    assert world.vendors["vendor1"].witnessed_seq == 5


def test_a_head_judged_against_those_held_tells_news_from_alarms() -> None:
    view = LedgerView()
    a, b = b"\x0a" * 32, b"\x0b" * 32
    assert view.judge(10, a, 1_000) == "new"
    view.keep(HeldHead(10, a, 1_000, b""))
    view.keep(HeldHead(12, b, 1_200, b"commitment"))  # a receipt's head
    assert view.judge(10, a, 1_000) == "seen"  # re-delivered after a reconnect
    assert view.judge(8, a, 900) == "stale"  # an older statement, delivered late
    assert view.judge(12, a, 1_300) == "contradiction"  # another hash for a seq it signed
    assert view.judge(11, a, 1_300) == "regression"  # signed after 12, yet below it
    assert view.judge(13, a, 1_300) == "new"
    view.follow(HeldHead(11, a, 1_300, b""))  # one alarm, then judge against the new head
    assert view.judge(11, a, 1_400) == "seen"
    assert view.vouched == 12


def test_a_confirmation_beyond_what_the_vendor_holds_means_its_store_is_behind(
    world: World,
) -> None:
    cid = open_paid_channel(world, units=5)
    vendor = world.vendors["vendor1"]
    key = world.broker.pair_key_with("vendor1", vendor.identity.agree_key)
    world.broker.send("vendor1", Redeemed(cid, 50, 50), world.now, auth=Auth.PAIR, key=key)
    world.pump()
    # Only an older store (a restore) explains paywords credited beyond those held: the
    # vendor says so and takes the broker's record, so paywords up to 50 are not served
    # a second time.
    (behind,) = events_of(world, "vendor1", StateBehind)
    assert behind.whose == "ours"
    assert "up to index 50 but this store holds only 5" in behind.detail
    assert vendor.chains[cid].redeemed == 50
    assert vendor.unredeemed_amount == 0
    word = world.buyers["buyer1"].channels[cid].chain.word
    before = vendor_total(world)
    assert rejected_with(send_payment(world, cid, 30, word(30)), PaymentError)
    send_payment(world, cid, 52, word(52))
    assert vendor_total(world) == before + 2  # only what lies beyond the broker's record


def test_a_receipt_beyond_what_the_wallet_spent_means_the_wallet_is_behind(world: World) -> None:
    cid = open_paid_channel(world, units=20)
    buyer = world.buyers["buyer1"]
    channel = buyer.channels[cid]
    channel.spent = channel.reserved = channel.acknowledged = 5  # as a backup left the wallet
    vendor = world.vendors["vendor1"]
    vendor.send(
        "buyer1",
        Receipt(cid, 20, 20),
        world.now,
        auth=Auth.CHAIN,
        key=vendor.chains[cid].key,
        ref=cid,
    )
    world.pump()
    (behind,) = events_of(world, "buyer1", StateBehind)
    assert behind.whose == "ours"
    assert "acknowledges index 20" in behind.detail
    assert "spent only 5" in behind.detail
    assert PaywordSpent(cid, 20, 20) in world.net.events["buyer1"]  # persisted before going on
    assert channel.spent == 20  # the next payment starts beyond what the vendor holds
