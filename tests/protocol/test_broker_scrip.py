"""The broker's scrip rules (docs/SCHEMES.md 3.8): minting, deposits, the return at the deadline."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from protocol.broker import BrokerCore, BrokerPolicy
from protocol.broker_books import certificate_of
from protocol.broker_events import (
    BROKER_EVENT_TYPES,
    AnyBrokerEvent,
    DepositRejected,
    ScripDeposited,
    ScripMinted,
    ScripReturned,
)
from protocol.codec import decode_as, decode_tagged_scrip, encode
from protocol.crypto import MacKey
from protocol.errors import LocalProtocolError
from protocol.messages import Balance, BalanceQuery, Deposit, Deposited, Error, Minted, TaggedScrip
from protocol.scrip import (
    PERIOD_MS,
    TAG_SCRIP,
    customer_master,
    customer_secret,
    period_of,
    tag_scrip,
    wrap_customer_secret,
)
from protocol.vendor import VendorCore
from tests.support.scrip_desk import ScripDesk, scrip_of
from tests.support.world import World, default_terms, make_world, seeded_identity

DAY = 86_400.0


@pytest.fixture
def desk() -> ScripDesk:
    return ScripDesk(make_world(vendors=2, buyers=2))


def minted(
    desk: ScripDesk, value: int = 100, buyer: str = "buyer1", vendor: str = "vendor1"
) -> Minted:
    answer = desk.mint(buyer, vendor, value)
    assert isinstance(answer, Minted), answer
    return answer


def refused(answer: object, code: str, words: str) -> None:
    assert isinstance(answer, Error), answer
    assert answer.code == code
    assert words in answer.detail, answer.detail


def recorded(desk: ScripDesk, kind: type[object]) -> list[object]:
    return [event for event in desk.events if isinstance(event, kind)]


def ledger(world: World) -> list[AnyBrokerEvent]:
    return [e for e in world.net.events["broker"] if isinstance(e, BROKER_EVENT_TYPES)]


# --- minting --------------------------------------------------------------------------------


def test_a_mint_reserves_the_value_and_hands_over_tagged_scrip_and_the_wrapped_secret(
    desk: ScripDesk,
) -> None:
    world = desk.world
    answer = minted(desk, 100)
    scrip = scrip_of(answer.scrip)
    now_ms = int(world.now * 1000)
    assert (scrip.vendor, scrip.buyer, scrip.value, scrip.currency) == (
        "vendor1",
        "buyer1",
        100,
        "EUR",
    )
    assert (scrip.serial, scrip.generation, scrip.period) == (1, 0, period_of(now_ms))
    assert scrip.vendor_serial == world.broker.accounts["vendor1"].serial
    assert scrip.expires == now_ms + PERIOD_MS
    assert scrip.properties == []
    # The vendor's own key verifies the tag; the buyer unwraps what the vendor derives.
    tagged = decode_tagged_scrip(answer.scrip)
    MacKey(desk.vendor_key("vendor1", scrip.period)).verify(tagged.tag, TAG_SCRIP, tagged.body)
    vendor_secret = customer_secret(
        customer_master(desk.pair_secret("vendor1"), "vendor1", scrip.period), "buyer1"
    )
    unwrapped = wrap_customer_secret(
        desk.pair_secret("buyer1"), "vendor1", scrip.vendor_serial, scrip.period, answer.secret
    )
    assert unwrapped == vendor_secret
    (event,) = recorded(desk, ScripMinted)
    assert isinstance(event, ScripMinted)
    assert (event.serial, event.value, event.scrip) == (1, 100, answer.scrip)
    assert world.broker.totals.reserved["buyer1"] == 100
    assert minted(desk, 5).scrip != answer.scrip
    assert scrip_of(world.broker.scrip.records[2].minted).serial == 2


def test_a_repeated_request_gets_the_same_bytes_and_records_nothing(desk: ScripDesk) -> None:
    request = desk.request_id()
    first = desk.mint("buyer1", "vendor1", 40, request)
    again = desk.mint("buyer1", "vendor1", 40, request)
    assert encode(first) == encode(again)
    assert not recorded(desk, ScripMinted)
    assert desk.world.broker.totals.reserved["buyer1"] == 40
    # Another buyer's identical id is its own request.
    other = desk.mint("buyer2", "vendor1", 40, request)
    assert isinstance(other, Minted)
    assert scrip_of(other.scrip).serial == 2


def test_properties_come_from_policy_and_expiry_stops_at_the_certificates() -> None:
    policy = BrokerPolicy(certificate_lifetime=DAY / 2, scrip_properties=("country=DE",))
    desk = ScripDesk(make_world(vendors=1, buyers=1, policy=policy))
    scrip = scrip_of(minted(desk, 10).scrip)
    assert scrip.properties == ["country=DE"]
    assert scrip.expires == int(desk.world.now * 1000) + int(DAY / 2 * 1000)


def test_policy_refuses_properties_no_scrip_could_carry() -> None:
    with pytest.raises(LocalProtocolError):
        BrokerPolicy(scrip_properties=("x" * 65,))
    with pytest.raises(LocalProtocolError):
        BrokerPolicy(scrip_lifetime=2 * DAY)
    with pytest.raises(LocalProtocolError, match="366 days"):
        BrokerPolicy(scrip_deposit_grace=366 * DAY + 1)  # the audit's bound on a deadline


def test_no_scrip_is_minted_that_would_expire_as_it_is_made(desk: ScripDesk) -> None:
    world = desk.world
    ends = certificate_of(world.broker.accounts["buyer1"].certificate).not_after
    world.now = ends / 1000  # the buyer's certificate is still valid, for this millisecond
    refused(desk.mint("buyer1", "vendor1", 10), "mint", "would expire as it is minted")
    assert world.broker.totals.reserved["buyer1"] == 0


def test_every_mint_refusal_is_answered_and_reserves_nothing(desk: ScripDesk) -> None:
    world = desk.world
    broker = world.broker
    refused(desk.mint("buyer1", "vendor1", 10_001), "mint", "at most 10000")
    refused(desk.mint("buyer1", "nobody", 10), "mint", "not a vendor")
    refused(desk.mint("buyer1", "buyer2", 10), "mint", "not a vendor")
    refused(desk.mint("vendor2", "vendor1", 10), "mint", "only buyers")
    broker.accounts["buyer1"].credit_limit = 150
    minted(desk, 100)
    refused(desk.mint("buyer1", "vendor1", 51), "mint", "credit limit 150")
    minted(desk, 50)
    broker.revoke("vendor2", world.now)
    refused(desk.mint("buyer1", "vendor2", 1), "mint", "revoked")
    broker.revoke("buyer2", world.now)
    refused(desk.mint("buyer2", "vendor1", 1), "mint", "revoked")
    assert broker.totals.reserved["buyer1"] == 150
    assert broker.totals.reserved["buyer2"] == 0
    assert len(broker.scrip.records) == 2


def test_a_vendor_in_another_currency_gets_no_scrip(desk: ScripDesk) -> None:
    world = desk.world
    token = world.net.open_account(world.broker, "dollars", "vendor", 0, "USD", world.now)
    terms = dataclasses.replace(default_terms(), currency="USD")
    vendor = VendorCore("dollars", seeded_identity("dollars"), world.broker.info, terms)
    world.net.attach(vendor, world.now)
    vendor.enroll(token, world.now)
    world.pump()
    assert vendor.certificate
    refused(desk.mint("buyer1", "dollars", 10), "mint", "takes USD")


def test_an_expired_certificate_gets_no_scrip() -> None:
    desk = ScripDesk(make_world(vendors=1, buyers=1, policy=BrokerPolicy(certificate_lifetime=DAY)))
    desk.world.now += 2 * DAY
    answer = desk.ask("buyer1", BalanceQuery())  # the stream still works; the mint does not
    assert isinstance(answer, Balance)
    refused(desk.mint("buyer1", "vendor1", 10), "mint", "not valid now")


# --- deposits ---------------------------------------------------------------------------------


def test_a_deposit_with_change_credits_the_price(desk: ScripDesk) -> None:
    broker = desk.world.broker
    scrip = minted(desk, 100).scrip
    change = desk.pay("vendor1", scrip, 30)
    answer = desk.deposit("vendor1", scrip, 30, change, item="article")
    assert answer == Deposited(1, 0, 30, 70, change)
    (event,) = recorded(desk, ScripDeposited)
    assert isinstance(event, ScripDeposited)
    assert (event.credit, event.outstanding, event.item) == (30, 70, "article")
    totals = broker.totals
    assert (totals.debited["buyer1"], totals.credited["vendor1"]) == (30, 30)
    assert totals.reserved["buyer1"] == 70
    assert totals.amounts["buyer1", "vendor1"] == 30
    assert totals.units["buyer1", "vendor1"] == 0
    assert scrip_of(change).value == 70


def test_a_deposit_of_a_later_generation_credits_the_ones_skipped(desk: ScripDesk) -> None:
    gen0 = minted(desk, 100).scrip
    gen1 = desk.pay("vendor1", gen0, 10)
    gen2 = desk.pay("vendor1", gen1, 20)
    gen3 = desk.pay("vendor1", gen2, 5)
    assert desk.deposit("vendor1", gen2, 5, gen3) == Deposited(1, 2, 35, 65, gen3)
    # Used up at generation 4: everything left is credited, nothing outstanding.
    answer = desk.deposit("vendor1", gen3, 65, b"")
    assert answer == Deposited(1, 3, 100, 0, b"")
    assert desk.world.broker.totals.reserved["buyer1"] == 0
    assert desk.world.broker.totals.debited["buyer1"] == 100


def test_repeats_and_older_generations_get_the_state_and_record_nothing(desk: ScripDesk) -> None:
    gen0 = minted(desk, 100).scrip
    gen1 = desk.pay("vendor1", gen0, 10)
    gen2 = desk.pay("vendor1", gen1, 20)
    state = desk.deposit("vendor1", gen1, 20, gen2)
    assert state == Deposited(1, 1, 30, 70, gen2)
    repeated = Deposited(1, 1, 30, 70, gen2, repeat=True)  # credited nothing: said so
    assert desk.deposit("vendor1", gen1, 20, gen2) == repeated
    assert not recorded(desk, ScripDeposited)
    assert desk.deposit("vendor1", gen0, 10, gen1) == repeated
    assert not recorded(desk, ScripDeposited)
    assert desk.world.broker.totals.credited["vendor1"] == 30


def test_a_retry_with_the_crediting_claim_is_no_repeat_and_records_nothing(
    desk: ScripDesk,
) -> None:
    gen0 = minted(desk, 100).scrip
    gen1 = desk.pay("vendor1", gen0, 30)
    claim, other = b"\x01" * 16, b"\x02" * 16
    state = Deposited(1, 0, 30, 70, gen1)
    assert desk.deposit("vendor1", gen0, 30, gen1, claim=claim) == state
    (credited,) = recorded(desk, ScripDeposited)
    assert isinstance(credited, ScripDeposited)
    assert credited.claim == claim
    assert desk.world.broker.scrip.records[1].claim == claim
    # The process whose deposit credited it, retrying after a lost answer: serve.
    assert desk.deposit("vendor1", gen0, 30, gen1, claim=claim) == state
    assert not recorded(desk, ScripDeposited)
    # Another process (another claim) or an off-line deposit (none): a repeat.
    repeated = msgspec.structs.replace(state, repeat=True)
    assert desk.deposit("vendor1", gen0, 30, gen1, claim=other) == repeated
    assert desk.deposit("vendor1", gen0, 30, gen1) == repeated
    assert not recorded(desk, ScripDeposited)
    # A later generation credited: the old claim's generation is a repeat, whatever it says.
    gen2 = desk.pay("vendor1", gen1, 10)
    later = Deposited(1, 1, 40, 60, gen2)
    assert desk.deposit("vendor1", gen1, 10, gen2, claim=other) == later
    assert desk.deposit("vendor1", gen0, 30, gen1, claim=claim) == msgspec.structs.replace(
        later, repeat=True
    )
    assert desk.world.broker.totals.credited["vendor1"] == 40


def test_the_same_generation_with_another_payment_is_refused(desk: ScripDesk) -> None:
    gen0 = minted(desk, 100).scrip
    desk.deposit("vendor1", gen0, 10, desk.pay("vendor1", gen0, 10))
    answer = desk.deposit("vendor1", gen0, 40, desk.pay("vendor1", gen0, 40))
    refused(answer, "deposit", "generation 0 already deposited")
    (rejected,) = recorded(desk, DepositRejected)
    assert isinstance(rejected, DepositRejected)
    assert decode_as(Deposit, rejected.deposit).price == 40
    assert desk.world.broker.totals.credited["vendor1"] == 10


def test_inflated_change_is_refused(desk: ScripDesk) -> None:
    gen0 = minted(desk, 100).scrip
    spent = scrip_of(gen0)
    key = desk.vendor_key("vendor1", spent.period)
    inflated = tag_scrip(msgspec.structs.replace(spent, generation=1, value=95), key)
    refused(desk.deposit("vendor1", gen0, 10, inflated), "deposit", "not the change")
    refused(desk.deposit("vendor1", gen0, 10, b""), "deposit", "not the change")
    refused(desk.deposit("vendor1", gen0, 100, inflated), "deposit", "not the change")
    assert len(recorded(desk, DepositRejected)) == 1
    assert desk.world.broker.totals.credited["vendor1"] == 0


def test_forged_or_altered_scrip_is_refused(desk: ScripDesk) -> None:
    gen0 = minted(desk, 100).scrip
    tagged = decode_tagged_scrip(gen0)
    forged = encode(TaggedScrip(tagged.body, bytes(32)))
    refused(desk.deposit("vendor1", forged, 10, b""), "deposit", "tag does not verify")
    assert not recorded(desk, DepositRejected)  # proves nothing about money: not kept
    spent = scrip_of(gen0)
    richer = encode(spent.__class__(**{**msgspec.structs.asdict(spent), "value": 200}))
    altered = encode(TaggedScrip(richer, tagged.tag))
    refused(desk.deposit("vendor1", altered, 10, b""), "deposit", "tag does not verify")
    # The vendor holds the key, but the broker credits only down from what it minted.
    key = desk.vendor_key("vendor1", spent.period)
    own = tag_scrip(msgspec.structs.replace(spent, value=200), key)
    refused(desk.deposit("vendor1", own, 200, b""), "deposit", "100 outstanding")
    assert len(recorded(desk, DepositRejected)) == 1  # a claim on the serial: evidence
    other_buyer = tag_scrip(msgspec.structs.replace(spent, buyer="buyer2"), key)
    refused(desk.deposit("vendor1", other_buyer, 100, b""), "deposit", "differs from serial 1")
    refused(desk.deposit("vendor1", b"\x92\x01", 1, b""), "deposit", "does not decode")
    assert not recorded(desk, DepositRejected)
    assert desk.world.broker.totals.credited["vendor1"] == 0


def test_another_vendors_scrip_or_a_serial_never_minted_is_refused(desk: ScripDesk) -> None:
    gen0 = minted(desk, 100).scrip
    refused(desk.deposit("vendor2", gen0, 10, b""), "deposit", "not minted for vendor2")
    spent = scrip_of(gen0)
    own = msgspec.structs.replace(spent, vendor="vendor2", serial=99)
    key = desk.vendor_key("vendor2", spent.period)
    never = tag_scrip(own, key)
    refused(desk.deposit("vendor2", never, 10, b""), "deposit", "serial 99 was not minted")
    refused(desk.deposit("buyer1", gen0, 100, b""), "deposit", "only vendors deposit")
    assert desk.world.broker.totals.credited["vendor2"] == 0


def test_a_deposit_after_the_deadline_is_refused(desk: ScripDesk) -> None:
    world = desk.world
    gen0 = minted(desk, 100).scrip
    deadline = scrip_of(gen0).expires / 1000 + world.broker.policy.scrip_deposit_grace
    world.now = deadline
    change = desk.pay("vendor1", gen0, 10)
    assert isinstance(desk.deposit("vendor1", gen0, 10, change), Deposited)  # just in time
    world.now = deadline + 0.001
    refused(desk.deposit("vendor1", change, 90, b""), "deposit", "past its deadline")
    assert world.broker.totals.credited["vendor1"] == 10


def test_a_vendor_that_rekeyed_still_deposits_scrip_of_its_old_certificate(desk: ScripDesk) -> None:
    world = desk.world
    gen0 = minted(desk, 100).scrip
    old_key = desk.vendor_key("vendor1", scrip_of(gen0).period)
    vendor = world.vendors["vendor1"]
    vendor.rekey(seeded_identity("vendor1-new"), world.now)
    world.pump()
    new_serial = world.broker.accounts["vendor1"].serial
    assert new_serial != scrip_of(gen0).vendor_serial
    change = tag_scrip(msgspec.structs.replace(scrip_of(gen0), generation=1, value=60), old_key)
    assert desk.deposit("vendor1", gen0, 40, change) == Deposited(1, 0, 40, 60, change)
    assert scrip_of(minted(desk, 5).scrip).vendor_serial == new_serial


# --- the return at the deadline -------------------------------------------------------------


def test_the_timer_returns_what_is_outstanding_once_and_closes_the_serial(desk: ScripDesk) -> None:
    world = desk.world
    broker = world.broker
    gen0 = minted(desk, 100).scrip
    used_up = minted(desk, 20).scrip
    change = desk.pay("vendor1", gen0, 30)
    desk.deposit("vendor1", gen0, 30, change)
    desk.deposit("vendor1", used_up, 20, b"")
    deadline = scrip_of(gen0).expires / 1000 + broker.policy.scrip_deposit_grace
    assert broker.get_timer() == pytest.approx(deadline)
    assert broker.totals.reserved["buyer1"] == 70
    assert broker.handle_timer(deadline - 1) == []
    events = [*broker.handle_timer(deadline), *broker.handle_timer(deadline + 1)]
    assert events == [
        ScripReturned(
            at=int(deadline * 1000), buyer="buyer1", vendor="vendor1", serial=1, amount=70
        )
    ]
    assert broker.totals.reserved["buyer1"] == 0
    assert broker.get_timer() is None
    assert broker.scrip.records[1].closed
    assert not broker.scrip.records[2].closed
    world.now = deadline + 2
    refused(desk.deposit("vendor1", change, 70, b""), "deposit", "past its deadline")
    refused(desk.deposit("vendor1", used_up, 20, b""), "deposit", "past its deadline")
    assert broker.totals.debited["buyer1"] == 50


def test_a_buyers_balance_shows_outstanding_scrip_as_reserved(desk: ScripDesk) -> None:
    gen0 = minted(desk, 100).scrip
    desk.deposit("vendor1", gen0, 25, desk.pay("vendor1", gen0, 25))
    balance = desk.ask("buyer1", BalanceQuery())
    assert isinstance(balance, Balance)
    assert (balance.debited, balance.reserved) == (25, 75)


def test_replaying_the_ledger_rebuilds_the_same_scrip_state(desk: ScripDesk) -> None:
    world = desk.world
    broker = world.broker
    gen0 = minted(desk, 100).scrip
    gen1 = desk.pay("vendor1", gen0, 10)
    desk.deposit("vendor1", gen0, 10, gen1)
    desk.deposit("vendor1", gen1, 50, desk.pay("vendor1", gen1, 50), claim=b"\x07" * 16)
    desk.mint("buyer2", "vendor2", 30)
    request = desk.request_id()
    first = desk.mint("buyer1", "vendor2", 7, request)
    due = broker.get_timer()
    assert due is not None
    returned = broker.handle_timer(due)
    world.net.events["broker"].extend(returned)

    rebuilt = BrokerCore("broker", seeded_identity("broker"))
    rebuilt.rebuild(ledger(world))
    assert rebuilt.get_timer() == broker.get_timer()  # both drop closed serials' deadlines
    assert rebuilt.scrip == broker.scrip
    assert rebuilt.scrip.records[1].claim == b"\x07" * 16  # a retry is still told apart
    for name in ("buyer1", "buyer2", "vendor1", "vendor2"):
        for figure in ("debited", "credited", "reserved"):
            assert getattr(rebuilt.totals, figure)[name] == getattr(broker.totals, figure)[name]
    assert dict(rebuilt.totals.amounts) == dict(broker.totals.amounts)
    # The rebuilt broker answers a repeated request with the same scrip and secret.
    world.broker = rebuilt
    world.net.cores["broker"] = rebuilt
    again = desk.mint("buyer1", "vendor2", 7, request)
    assert isinstance(first, Minted)
    assert isinstance(again, Minted)
    assert (again.scrip, again.secret) == (first.scrip, first.secret)


def test_a_changed_policy_moves_no_deadline_of_scrip_already_minted(desk: ScripDesk) -> None:
    minted(desk, 100)
    before = desk.world.broker.scrip.records[1].deadline_ms
    (event,) = recorded(desk, ScripMinted)
    assert isinstance(event, ScripMinted)
    assert (event.deadline, event.max_value) == (before, BrokerPolicy().max_scrip_value)

    shorter = BrokerPolicy(scrip_deposit_grace=60.0, max_scrip_value=50)
    rebuilt = BrokerCore("broker", seeded_identity("broker"), policy=shorter)
    rebuilt.rebuild(ledger(desk.world))
    assert rebuilt.scrip.records[1].deadline_ms == before
    assert rebuilt.get_timer() == before / 1000
