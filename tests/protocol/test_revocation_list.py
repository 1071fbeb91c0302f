"""The revocation list stays within one message: expired certificates leave it, and it is bounded.

docs/PROTOCOL.md 11.10: the list carries the serials of revoked certificates that have
not expired, at most ``MAX_REVOKED`` of them, which fit a 64 KiB message even at the
largest serials; the broker refuses a revocation the list could not carry, and its
``sequence`` keeps growing as expired serials leave.
"""

from __future__ import annotations

import msgspec
import pytest

from protocol.broker_books import OVER_LIMIT_RESERVE, REKEYS_LISTED_PER_ACCOUNT
from protocol.broker_events import AccountOpened, AnyBrokerEvent, CertificateIssued
from protocol.broker_events import CertificateRevoked as Revoked
from protocol.codec import encode
from protocol.credentials import issue_certificate
from protocol.envelope import DEFAULT_MAX_MESSAGE_SIZE
from protocol.errors import LocalProtocolError
from protocol.events import PeerError, RevocationsUpdated
from protocol.messages import MAX_REVOKED, Certificate, RevocationList
from tests.support.world import World, events_of, make_world, seeded_identity

LARGEST_SERIAL = 2**63 - 1
DAY_MS = 86_400_000


def revoked_accounts(
    world: World, count: int, not_after: int, first: int = 1_000
) -> list[AnyBrokerEvent]:
    """``count`` accounts whose certificates (valid until ``not_after``) are revoked."""
    broker = world.broker
    key = seeded_identity("holder")
    events: list[AnyBrokerEvent] = []
    for n in range(count):
        name, serial = f"device{first + n}", first + n
        certificate = Certificate(
            serial, name, "buyer", key.sign_key, key.agree_key, 10, "EUR", 0, not_after, "broker"
        )
        events += [
            AccountOpened(
                at=0,
                account=name,
                role="buyer",
                credit_limit=10,
                currency="EUR",
                token_nonce=bytes(16),
            ),
            CertificateIssued(
                at=0,
                account=name,
                serial=serial,
                certificate=issue_certificate(broker.identity, certificate),
            ),
            Revoked(at=0, account=name, serial=serial, reason="operator"),
        ]
    return events


def test_the_largest_list_fits_one_message_and_every_agent_takes_it() -> None:
    world = make_world(vendors=1, buyers=1)
    serials = list(range(LARGEST_SERIAL - MAX_REVOKED + 1, LARGEST_SERIAL + 1))
    world.broker.broadcast(
        "revocations", RevocationList("broker", 10**9, int(world.now * 1000), serials), world.now
    )
    (sent,) = [out for out in world.broker.data_to_send() if out.topic.endswith("revocations")]
    assert len(sent.payload) <= DEFAULT_MAX_MESSAGE_SIZE
    for agent in (world.buyers["buyer1"], world.vendors["vendor1"]):
        events = agent.receive(sent.topic, sent.payload, world.now)
        (updated,) = [e for e in events if isinstance(e, RevocationsUpdated)]
        assert len(updated.serials) == MAX_REVOKED
        assert LARGEST_SERIAL in agent.revoked
    too_long = encode(RevocationList("broker", 1, 0, [*serials, 1]))
    with pytest.raises(msgspec.ValidationError, match="length <= 7000"):
        msgspec.msgpack.decode(too_long, type=RevocationList)


def test_the_operator_stops_short_of_the_places_kept_for_over_limit_revocations() -> None:
    world = make_world(vendors=0, buyers=1)
    broker = world.broker
    not_after = int(world.now * 1000) + 30 * DAY_MS
    broker.rebuild(revoked_accounts(world, MAX_REVOKED - OVER_LIMIT_RESERVE, not_after))
    with pytest.raises(LocalProtocolError, match="the revocation list is full: 6900"):
        broker.revoke("buyer1", world.now)
    assert "buyer1" not in broker.revoked.values()  # nothing recorded

    later = world.now + 31 * 86_400  # the revoked certificates have all expired
    decided = broker.revoke("buyer1", later)
    assert [type(e) for e in decided] == [Revoked]
    assert broker.listed_revocations(later) == [broker.accounts["buyer1"].serial]


def test_past_the_bound_the_list_keeps_those_that_expire_last_and_stays_readable() -> None:
    world = make_world(vendors=1, buyers=0)
    broker = world.broker
    now_ms = int(world.now * 1000)
    broker.rebuild(revoked_accounts(world, 10, now_ms + DAY_MS))  # serials 1000..1009
    broker.rebuild(revoked_accounts(world, MAX_REVOKED, now_ms + 30 * DAY_MS, first=2_000))
    listed = broker.listed_revocations(world.now)
    assert len(listed) == MAX_REVOKED
    assert min(listed) == 2_000  # the 10 expiring first gave way
    broker.publish_revocations(world.now)
    world.pump()
    assert len(world.vendors["vendor1"].revoked) == MAX_REVOKED


def test_one_account_cannot_fill_the_list_with_rekeys() -> None:
    world = make_world(vendors=0, buyers=1)
    buyer = world.buyers["buyer1"]
    for n in range(REKEYS_LISTED_PER_ACCOUNT):
        buyer.rekey(seeded_identity(f"buyer1-{n}"), world.now)
        world.pump()
    assert world.broker.listed_of("buyer1", world.now) == REKEYS_LISTED_PER_ACCOUNT
    serial = buyer.certified.serial if buyer.certified else 0
    buyer.rekey(seeded_identity("buyer1-more"), world.now)
    world.pump()
    assert buyer.certified is not None
    assert buyer.certified.serial == serial  # refused: the same certificate
    refused = [e for e in events_of(world, "buyer1", PeerError) if e.code == "rekey"]
    assert refused
    assert "still on the revocation list" in refused[-1].detail


def test_expired_serials_leave_the_list_and_its_sequence_still_grows() -> None:
    world = make_world(vendors=1, buyers=2)
    broker = world.broker
    soon = int(world.now * 1000) + DAY_MS
    broker.rebuild(revoked_accounts(world, 3, soon))
    broker.revoke("buyer1", world.now)
    world.pump()
    vendor = world.vendors["vendor1"]
    first = events_of(world, "vendor1", RevocationsUpdated)[-1]
    assert first.sequence == 4
    assert len(first.serials) == 4

    world.now += 2 * 86_400  # the three device certificates expire; buyer1's does not
    broker.revoke("buyer2", world.now)
    world.pump()
    second = events_of(world, "vendor1", RevocationsUpdated)[-1]
    assert second.sequence == 5  # every revocation counted, so the shorter list wins
    assert second.serials == {broker.accounts[b].serial for b in ("buyer1", "buyer2")}
    assert vendor.revoked == second.serials
