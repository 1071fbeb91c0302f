"""A vendor's offer taken before the revocation list that revokes it is not paid.

Offers and revocation lists are retained on separate topics and arrive in no set order
(docs/PROTOCOL.md 11.3): the buyer checks the vendor's certificate against the newest list
at every commitment and payment, not only when the offer arrives.
"""

from __future__ import annotations

import re

import pytest

from protocol.errors import LocalProtocolError
from tests.support.world import World


def revoke_vendor(world: World, vendor: str = "vendor1") -> int:
    """Revoke ``vendor``'s certificate at the broker and deliver the new list everywhere."""
    world.broker.revoke(vendor, world.now)
    world.pump()
    (serial,) = world.buyers["buyer1"].revoked
    return serial


def test_an_offer_held_before_its_vendor_is_revoked_is_not_paid(world: World) -> None:
    buyer = world.buyers["buyer1"]
    opened = buyer.open_channel("vendor1", 100, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 1, world.now)
    world.pump()
    assert "vendor1" in buyer.offers  # the offer came first, and is still held

    serial = revoke_vendor(world)
    assert serial == buyer.offers["vendor1"].certificate.serial
    expected = f"vendor1's certificate (serial {serial}) is revoked"
    assert expected in (buyer.refusal("vendor1", [1], "", 0, world.now) or "")
    with pytest.raises(LocalProtocolError, match=re.escape(expected)):
        buyer.pay(opened.commitment_id, 1, world.now)
    with pytest.raises(LocalProtocolError, match=re.escape(expected)):
        buyer.open_channel("vendor1", 100, world.now)
    assert not buyer.data_to_send()  # nothing left for the revoked vendor
