"""A buyer past its MiniPay allowance at several vendors at once (docs/SCHEMES.md 4.4).

Each vendor accepts at most the day's grant off-line, only chains that end that day, and
sends everything above it to the broker. The grant reserved ``K * amount`` of the credit,
so on-line chains cannot use that share: a buyer at no more than ``K`` vendors stays
within its limit ``L``, and one at ``V > K`` vendors passes it by at most
``(V - K) * amount`` for that day, after which the broker revokes it.
"""

from __future__ import annotations

import pytest

from protocol.broker import BrokerPolicy
from protocol.broker_events import CertificateRevoked, CommitmentRegistered, RegistrationRefused
from protocol.events import PeerError
from protocol.vendor import VendorTerms
from tests.support.world import World, events_of, make_world

LIMIT = 1_000
ALLOWANCE = 100
K = 4
GRANTING = VendorTerms(
    unit_value=1, currency="EUR", max_length=10_000, max_jump=1_000, allowance=True
)
ONLINE = VendorTerms(unit_value=1, currency="EUR", max_length=10_000, max_jump=1_000, online=True)


def overspending_day(vendors: int) -> World:
    """Alice takes the most the day allows: the on-line rest of L, then every vendor's grant."""
    world = make_world(vendors=0, buyers=0, policy=BrokerPolicy(allowance_vendors=K))
    for number in range(vendors):
        world.enroll_vendor(f"v{number}", GRANTING)
    world.enroll_vendor("online", ONLINE)
    alice = world.enroll_buyer("alice", credit_limit=LIMIT)
    world.net.events["broker"].append(world.broker.set_allowance("alice", ALLOWANCE, world.now))

    alice.query_allowance(world.now)
    world.pump()
    rest = LIMIT - K * ALLOWANCE  # what the grant's reservation leaves for on-line chains
    chains = [alice.open_channel("online", rest, world.now).commitment_id]
    world.pump()
    for number in range(vendors):
        chains.append(alice.open_channel(f"v{number}", ALLOWANCE, world.now).commitment_id)
        world.pump()
        # A second chain at the same vendor is above its allowance: the broker decides.
        alice.open_channel(f"v{number}", 10, world.now)
        world.pump()
    for cid in chains:
        if any(cid in vendor.chains for vendor in world.vendors.values()):
            alice.pay(cid, alice.channels[cid].chain.length, world.now)
    world.pump()
    for vendor in world.vendors.values():
        vendor.redeem_all(world.now)
    world.pump()
    return world


@pytest.mark.parametrize("vendors", [2, K, 7])
def test_a_buyer_at_several_vendors_at_once_stays_within_the_bound(vendors: int) -> None:
    world = overspending_day(vendors)
    broker = world.broker
    granting = [world.vendors[f"v{n}"] for n in range(vendors)]
    for vendor in granting:
        assert vendor.allowance_counts.today("alice", world.now) <= ALLOWANCE
    offline = sum(v.allowance_counts.today("alice", world.now) for v in granting)
    assert offline == vendors * ALLOWANCE  # every vendor used its grant, and no more

    # Every chain above an allowance went to the broker, which refused it: no credit left.
    ledger = world.net.events["broker"]
    refused = [e for e in ledger if isinstance(e, RegistrationRefused)]
    assert len(refused) == vendors
    assert all("credit limit" in e.reason for e in refused)
    assert len(events_of(world, "alice", PeerError)) == vendors
    registered = [e for e in ledger if isinstance(e, CommitmentRegistered) and e.reserved]
    assert [e.vendor for e in registered] == ["online"]

    debited = broker.totals.debited["alice"]
    assert debited == LIMIT - K * ALLOWANCE + vendors * ALLOWANCE
    assert debited <= LIMIT + max(0, vendors - K) * ALLOWANCE  # SCHEMES 4.4's bound
    revoked = [e for e in ledger if isinstance(e, CertificateRevoked)]
    if vendors <= K:
        assert debited <= LIMIT
        assert not revoked
    else:
        assert revoked  # past L: cut off, and no grant tomorrow
        assert revoked[0].reason == "credit limit exceeded"
