"""A buyer whose clock runs 60 s behind the broker's enrolls, commits and pays.

The broker stamps ``not_before`` with its own clock at enrollment. Without an allowance
the buyer would refuse its own fresh certificate, and the vendor its first commitment
(stamped with the buyer's clock): certificates get the envelopes' skew allowance
(docs/PROTOCOL.md 5.2).
"""

from __future__ import annotations

from protocol import BuyerCore, topics
from protocol.core import Core
from protocol.events import CertificateReceived, MessageRejected, ReceiptReceived
from tests.support.world import SeededRandom, World, seeded_identity

BEHIND = 60.0


def deliver(sender: Core[object], receiver: Core[object], now: float) -> list[object]:
    """Hand ``receiver`` what ``sender`` queued for it (or broadcast), at ``now``."""
    events: list[object] = []
    inbox = topics.inbox(receiver.account, sender.account)
    for out in sender.data_to_send():
        if out.topic == inbox or out.retain:
            events.extend(receiver.receive(out.topic, out.payload, now))
    return events


def test_a_buyer_60_s_behind_the_broker_enrolls_commits_and_pays(world: World) -> None:
    broker, vendor = world.broker, world.vendors["vendor1"]
    now = world.now
    behind = now - BEHIND
    token = world.net.open_account(broker, "slow", "buyer", 10**6, "EUR", now)
    buyer = BuyerCore("slow", seeded_identity("slow"), broker.info, random=SeededRandom("slow"))
    buyer.enroll(token, behind)
    assert not any(isinstance(e, MessageRejected) for e in deliver(buyer, broker, now))
    enrolled = deliver(broker, buyer, behind)
    assert any(isinstance(e, CertificateReceived) for e in enrolled), enrolled
    vendor.publish_offer(now)
    deliver(vendor, buyer, behind)

    opened = buyer.open_channel("vendor1", 100, behind)
    buyer.pay(opened.commitment_id, 3, behind)
    accepted = deliver(buyer, vendor, now)
    assert not any(isinstance(e, MessageRejected) for e in accepted), accepted
    receipts = [e for e in deliver(vendor, buyer, behind) if isinstance(e, ReceiptReceived)]
    assert receipts[-1].index == 3
