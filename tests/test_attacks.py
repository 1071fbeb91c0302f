"""Named attacks on the cores; each must fail and leave the money untouched."""

from __future__ import annotations

from protocol import topics
from protocol.broker import BrokerCore, BrokerPolicy
from protocol.broker_events import PaywordsRedeemed, RedemptionRejected
from protocol.chain import HashChain
from protocol.credentials import issue_certificate, sign_commitment
from protocol.crypto import Identity, MacKey, chain_key
from protocol.envelope import Auth, seal
from protocol.errors import (
    AuthenticationError,
    CertificateError,
    CommitmentError,
    PaymentError,
    ReplayError,
    StaleMessageError,
)
from protocol.events import (
    LedgerHeadWitnessed,
    MessageRejected,
    PaymentAccepted,
    PaywordSpent,
    PeerError,
    ReceiptReceived,
    StateBehind,
)
from protocol.ledger_heads import HeldHead, LedgerView
from protocol.memory import MemoryNetwork
from protocol.messages import (
    Certificate,
    Commit,
    Commitment,
    LedgerHead,
    Payment,
    Receipt,
    Redeem,
    Redeemed,
)
from tests.world import (
    SeededRandom,
    World,
    events_of,
    make_world,
    seeded_identity,
)


def open_paid_channel(world: World, units: int = 5, length: int = 100) -> bytes:
    buyer = world.buyers["buyer1"]
    opened = buyer.open_channel("vendor1", length, world.now)
    world.pump()
    if units:
        buyer.pay(opened.commitment_id, units, world.now)
        world.pump()
    return opened.commitment_id


def send_payment(world: World, cid: bytes, index: int, word: bytes) -> list[object]:
    """The buyer sends an arbitrary (index, payword) on its own authenticated stream."""
    buyer = world.buyers["buyer1"]
    channel = buyer.channels[cid]
    buyer.send(
        "vendor1", Payment(cid, index, word), world.now, auth=Auth.CHAIN, key=channel.key, ref=cid
    )
    (out,) = buyer.data_to_send()
    return list(world.net.inject("vendor1", out.topic, out.payload, world.now))


def rejected_with(events: list[object], error: type[Exception]) -> bool:
    return any(isinstance(e, MessageRejected) and isinstance(e.error, error) for e in events)


def vendor_total(world: World) -> int:
    return sum(e.amount for e in events_of(world, "vendor1", PaymentAccepted))


def test_payword_from_another_chain_is_rejected(world: World) -> None:
    first = open_paid_channel(world, units=5)
    second = open_paid_channel(world, units=0)
    stolen = world.buyers["buyer1"].channels[first].chain.word(6)
    events = send_payment(world, second, 6, stolen)
    assert rejected_with(events, PaymentError)
    assert vendor_total(world) == 5


def test_wrong_root_payword_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=0)
    unrelated = HashChain(b"\x07" * 32, 100)
    events = send_payment(world, cid, 1, unrelated.word(1))
    assert rejected_with(events, PaymentError)
    assert vendor_total(world) == 0


def test_non_monotonic_index_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=10)
    chain = world.buyers["buyer1"].channels[cid].chain
    events = send_payment(world, cid, 9, chain.word(9))
    assert rejected_with(events, PaymentError)
    assert vendor_total(world) == 10


def test_same_index_with_a_different_payword_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=10)
    events = send_payment(world, cid, 10, b"\x01" * 32)
    assert rejected_with(events, PaymentError)
    # The exact same payword again is a harmless duplicate: re-acknowledged, not re-credited.
    chain = world.buyers["buyer1"].channels[cid].chain
    assert not send_payment(world, cid, 10, chain.word(10))
    assert vendor_total(world) == 10


def test_index_beyond_the_chain_length_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=0, length=20)
    events = send_payment(world, cid, 21, b"\x02" * 32)
    assert rejected_with(events, PaymentError)


def test_jump_above_the_vendor_maximum_is_rejected_before_hashing(world: World) -> None:
    cid = open_paid_channel(world, units=0, length=10_000)
    chain = world.buyers["buyer1"].channels[cid].chain
    max_jump = world.vendors["vendor1"].terms.max_jump
    events = send_payment(world, cid, max_jump + 1, chain.word(max_jump + 1))
    assert rejected_with(events, PaymentError)
    assert vendor_total(world) == 0


def test_commitment_presented_to_another_vendor_is_rejected() -> None:
    world = make_world(vendors=2, buyers=1)
    buyer = world.buyers["buyer1"]
    opened = buyer.open_channel("vendor1", 100, world.now)
    (commit,) = buyer.data_to_send()
    # Re-address the commit to vendor2 (the attacker re-MACs it with a key it could derive
    # only as the buyer; here the buyer itself tries to spend one chain twice).
    vendor2_key = buyer.offers["vendor2"].certificate.agree_key
    key = MacKey(chain_key(buyer.identity, vendor2_key, "buyer1", "vendor2", opened.commitment_id))
    topic = topics.inbox("vendor2", "buyer1")
    payload = seal(
        topic,
        Commit(opened.commitment),
        auth=Auth.CHAIN,
        sender="buyer1",
        recipient="vendor2",
        counter=1,
        now=world.now,
        key=key,
        ref=opened.commitment_id,
    )
    events = world.net.inject("vendor2", topic, payload, world.now)
    assert any(
        isinstance(e, MessageRejected) and isinstance(e.error, CommitmentError) for e in events
    )
    assert not world.vendors["vendor2"].chains
    # And vendor2 cannot redeem it at the broker either.
    world.net.inject("vendor1", commit.topic, commit.payload, world.now)
    world.pump()
    buyer.pay(opened.commitment_id, 5, world.now)
    world.pump()
    vendor1_state = world.vendors["vendor1"].chains[opened.commitment_id]
    world.vendors["vendor2"].send(
        "broker",
        Redeem(opened.commitment, 5, vendor1_state.word),
        world.now,
        auth=Auth.PAIR,
        key=world.vendors["vendor2"].broker_key,
    )
    world.pump()
    assert world.broker.totals.credited.get("vendor2", 0) == 0
    rejections = [e for e in world.net.ledger_events("broker") if isinstance(e, RedemptionRejected)]
    assert rejections
    assert rejections[0].vendor == "vendor2"


def test_expired_certificate_is_rejected() -> None:
    net = MemoryNetwork()
    broker = BrokerCore(
        "broker",
        seeded_identity("broker"),
        policy=BrokerPolicy(certificate_lifetime=3600),
        random=SeededRandom("broker"),
    )
    world = World(net, broker)
    net.attach(broker, world.now)
    broker.publish_identity(world.now)
    world.pump()
    world.enroll_vendor("vendor1")
    buyer = world.enroll_buyer("buyer1")
    world.now += 2 * 3600
    buyer.open_channel("vendor1", 100, world.now)
    world.pump()
    rejections = events_of(world, "vendor1", MessageRejected)
    assert rejections
    assert isinstance(rejections[-1].error, CertificateError | CommitmentError)
    assert not world.vendors["vendor1"].chains


def forged_commit(world: World, signer_of_certificate: Identity) -> tuple[str, bytes, bytes]:
    """Mallory certifies herself with a key that is not the broker's and commits."""
    mallory = seeded_identity("mallory")
    certificate = Certificate(
        serial=999,
        subject="mallory",
        role="buyer",
        sign_key=mallory.sign_key,
        agree_key=mallory.agree_key,
        credit_limit=10**9,
        currency="EUR",
        not_before=int(world.now * 1000) - 1000,
        not_after=int(world.now * 1000) + 10**9,
        issuer="broker",
    )
    signed_certificate = issue_certificate(signer_of_certificate, certificate)
    chain = HashChain(b"\x05" * 32, 100)
    commitment = Commitment(
        "vendor1",
        signed_certificate,
        chain.root,
        100,
        1,
        "EUR",
        int(world.now * 1000),
        int(world.now * 1000) + 10**6,
    )
    signed, cid = sign_commitment(mallory, commitment)
    vendor_key = world.vendors["vendor1"].identity.agree_key
    key = MacKey(chain_key(mallory, vendor_key, "mallory", "vendor1", cid))
    topic = topics.inbox("vendor1", "mallory")
    payload = seal(
        topic,
        Commit(signed),
        auth=Auth.CHAIN,
        sender="mallory",
        recipient="vendor1",
        counter=1,
        now=world.now,
        key=key,
        ref=cid,
    )
    return topic, payload, cid


def test_forged_broker_signature_is_rejected(world: World) -> None:
    topic, payload, cid = forged_commit(world, seeded_identity("not-the-broker"))
    events = world.net.inject("vendor1", topic, payload, world.now)
    assert any(
        isinstance(e, MessageRejected) and isinstance(e.error, CertificateError) for e in events
    )
    assert cid not in world.vendors["vendor1"].chains
    assert not world.vendors["vendor1"].data_to_send()  # no answer to the unauthenticated


def test_replayed_envelope_is_rejected(world: World) -> None:
    buyer = world.buyers["buyer1"]
    cid = open_paid_channel(world, units=0)
    buyer.pay(cid, 3, world.now)
    (out,) = buyer.data_to_send()
    first = world.net.inject("vendor1", out.topic, out.payload, world.now)
    assert [type(e) for e in first] == [PaymentAccepted]
    events = world.net.inject("vendor1", out.topic, out.payload, world.now)
    assert rejected_with(list(events), ReplayError)
    assert vendor_total(world) == 3


def test_stale_envelope_is_rejected(world: World) -> None:
    buyer = world.buyers["buyer1"]
    cid = open_paid_channel(world, units=0)
    buyer.pay(cid, 3, world.now - 3600)
    (out,) = buyer.data_to_send()
    events = world.net.inject("vendor1", out.topic, out.payload, world.now)
    assert rejected_with(list(events), StaleMessageError)
    assert vendor_total(world) == 0


def test_envelope_moved_to_another_topic_fails_authentication() -> None:
    world = make_world(vendors=1, buyers=2)
    buyer = world.buyers["buyer1"]
    cid = buyer.open_channel("vendor1", 100, world.now).commitment_id
    world.pump()
    buyer.pay(cid, 3, world.now)
    (out,) = buyer.data_to_send()
    moved = topics.inbox("vendor1", "buyer2")
    events = world.net.inject("vendor1", moved, out.payload, world.now)
    assert rejected_with(list(events), AuthenticationError)
    assert vendor_total(world) == 0


def test_vendor_over_claiming_at_redemption_is_rejected(world: World) -> None:
    cid = open_paid_channel(world, units=5)
    vendor = world.vendors["vendor1"]
    state = vendor.chains[cid]
    for index, word in ((6, state.word), (101, state.word), (50, b"\x09" * 32)):
        vendor.send(
            "broker",
            Redeem(state.verified.signed, index, word),
            world.now,
            auth=Auth.PAIR,
            key=vendor.broker_key,
        )
        world.pump()
    assert world.broker.totals.credited.get("vendor1", 0) == 0
    assert len(events_of(world, "vendor1", PeerError)) == 3
    vendor.redeem_all(world.now)
    world.pump()
    assert world.broker.totals.credited["vendor1"] == 5
    events = world.net.ledger_events("broker")
    assert len([e for e in events if isinstance(e, RedemptionRejected)]) == 3
    assert [e.amount for e in events if isinstance(e, PaywordsRedeemed)] == [5]


def test_revoked_buyer_can_neither_commit_nor_pay(world: World) -> None:
    buyer = world.buyers["buyer1"]
    cid = open_paid_channel(world, units=2)
    world.broker.revoke("buyer1", world.now)
    world.pump()
    assert world.vendors["vendor1"].revoked
    buyer.pay(cid, 1, world.now)
    world.pump()
    buyer.open_channel("vendor1", 10, world.now)
    world.pump()
    assert vendor_total(world) == 2
    assert events_of(world, "buyer1", ReceiptReceived)[-1].index == 2
    assert events_of(world, "buyer1", PeerError)


def unverifiable_commit(world: World, offset: int) -> tuple[str, bytes]:
    """A commit from 'mallory' whose certificate a fake broker signed: fails its signature."""
    mallory = seeded_identity("mallory")
    fake = seeded_identity("fake-broker")
    certificate = issue_certificate(
        fake,
        Certificate(
            1, "mallory", "buyer", mallory.sign_key, mallory.agree_key, 10**6, "EUR",
            int((world.now - 60) * 1000), int((world.now + 3600) * 1000), "broker",
        ),
    )  # fmt: skip
    commitment = Commitment(
        "vendor1", certificate, bytes(32), 10, 1, "EUR", int(world.now * 1000),
        int((world.now + 600 + offset) * 1000),
    )  # fmt: skip
    signed, cid = sign_commitment(mallory, commitment)
    topic = topics.inbox("vendor1", "mallory")
    payload = seal(
        topic, Commit(signed), auth=Auth.CHAIN, sender="mallory", recipient="vendor1",
        counter=offset, now=world.now, key=MacKey(bytes(32)), ref=cid,
    )  # fmt: skip
    return topic, payload


def test_failed_commitments_are_throttled_per_sender_until_the_window_passes(
    world: World,
) -> None:
    vendor = world.vendors["vendor1"]
    budget, window = vendor.terms.commit_failure_budget, vendor.terms.commit_failure_window
    codes = []
    for offset in range(budget + 3):
        topic, payload = unverifiable_commit(world, offset)
        (event,) = world.net.inject("vendor1", topic, payload, world.now)
        assert isinstance(event, MessageRejected)
        codes.append(event.error.code)
    assert codes == ["certificate"] * budget + ["throttled"] * 3
    world.now += window + 1
    topic, payload = unverifiable_commit(world, 99)
    (event,) = world.net.inject("vendor1", topic, payload, world.now)
    assert isinstance(event, MessageRejected)
    assert event.error.code == "certificate"  # a new window: checked (and refused) again
    # An honest buyer was never throttled.
    assert open_paid_channel(world, units=3)
    assert vendor_total(world) == 3


def test_vendor_exposure_counts_unspent_chains_until_they_expire() -> None:
    world = make_world(vendors=1, buyers=0)
    buyer = world.enroll_buyer("buyer1", credit_limit=100)
    world.buyers["buyer1"] = buyer
    vendor = world.vendors["vendor1"]
    opened = buyer.open_channel("vendor1", 60, world.now, lifetime=10)
    world.pump()
    buyer.pay(opened.commitment_id, 20, world.now)
    world.pump()
    assert vendor.exposure("buyer1", world.now) == 60  # 20 held + 40 still payable
    refused = buyer.open_channel("vendor1", 50, world.now)
    world.pump()
    assert refused.commitment_id not in vendor.chains
    world.now += 11  # the first chain expired: only its 20 unredeemed paywords count
    assert vendor.exposure("buyer1", world.now) == 20
    accepted = buyer.open_channel("vendor1", 80, world.now)
    world.pump()
    assert accepted.commitment_id in vendor.chains
    assert vendor.exposure("buyer1", world.now) == 100


def test_broker_revokes_a_buyer_past_its_limit_once() -> None:
    world = make_world(vendors=2, buyers=0)
    buyer = world.enroll_buyer("buyer1", credit_limit=50)
    for vendor in ("vendor1", "vendor2"):
        cid = buyer.open_channel(vendor, 50, world.now).commitment_id
        world.pump()
        buyer.pay(cid, 40, world.now)
        world.pump()
        world.vendors[vendor].redeem_all(world.now)
        world.pump()
    serial = world.broker.accounts["buyer1"].serial
    assert serial in world.broker.revoked
    assert all(serial in vendor.revoked for vendor in world.vendors.values())
    assert world.broker.totals.debited["buyer1"] == 80
    exceeded = [
        e for e in world.net.ledger_events("broker") if type(e).__name__ == "CreditLimitExceeded"
    ]
    assert len(exceeded) <= 1


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
    channel.spent = channel.acknowledged = 5  # the wallet as a backup left it
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
    assert PaywordSpent(cid, 20) in world.net.events["buyer1"]  # persisted before going on
    assert channel.spent == 20  # the next payment starts beyond what the vendor holds
