"""Units of the envelope machinery: replay window, counters, topics, chains, limits."""

from __future__ import annotations

import pytest

from protocol import topics
from protocol.chain import HashChain, extends, step
from protocol.crypto import MacKey
from protocol.envelope import (
    REPLAY_WINDOW,
    Auth,
    Counter,
    Parsed,
    ReplayGuard,
    parse,
    seal,
    verify_mac,
)
from protocol.errors import (
    AuthenticationError,
    LocalProtocolError,
    MalformedMessageError,
    ReplayError,
    StaleMessageError,
)
from protocol.messages import BalanceQuery

KEY = MacKey(b"k" * 32)
NOW = 1_767_225_600.0


def envelope(counter: int, now: float = NOW, sender: str = "alice") -> Parsed:
    topic = topics.inbox("broker", sender)
    payload = seal(
        topic,
        BalanceQuery(),
        auth=Auth.PAIR,
        sender=sender,
        recipient="broker",
        counter=counter,
        now=now,
        key=KEY,
    )
    parsed = parse(payload)
    verify_mac(parsed, topic, KEY)
    return parsed


def test_replay_window_accepts_reordering_and_refuses_repeats() -> None:
    guard = ReplayGuard()
    for counter in (100, 103, 101, 102):
        guard.check(envelope(counter), NOW)
    for counter in (100, 101, 102, 103):
        with pytest.raises(ReplayError):
            guard.check(envelope(counter), NOW)
    guard.check(envelope(100 + REPLAY_WINDOW + 50), NOW)
    with pytest.raises(ReplayError):  # fell out of the window: refused, never re-accepted
        guard.check(envelope(104), NOW)
    guard.check(envelope(100, sender="bob"), NOW)  # streams are per sender


def test_clock_skew_is_bounded_both_ways() -> None:
    guard = ReplayGuard(max_skew=30)
    guard.check(envelope(1, now=NOW - 29), NOW)
    with pytest.raises(StaleMessageError):
        guard.check(envelope(2, now=NOW - 31), NOW)
    with pytest.raises(StaleMessageError):
        guard.check(envelope(3, now=NOW + 31), NOW)


def test_idle_streams_are_forgotten_only_when_their_messages_are_stale() -> None:
    guard = ReplayGuard(max_skew=10)
    guard.check(envelope(1), NOW)
    guard.prune(NOW + 19)
    assert len(guard) == 1
    guard.prune(NOW + 21)
    assert len(guard) == 0
    with pytest.raises(StaleMessageError):  # the forgotten message is stale by then
        guard.check(envelope(1), NOW + 21)


def test_counters_are_consecutive_and_rise_across_restarts() -> None:
    first = Counter()
    values = [first.next("bob", Auth.PAIR, b"", NOW) for _ in range(3)]
    assert values[1] == values[0] + 1
    assert values[2] == values[0] + 2
    restarted = Counter()
    assert restarted.next("bob", Auth.PAIR, b"", NOW + 0.001) > values[-1]


def test_mac_covers_the_topic() -> None:
    payload = seal(
        topics.inbox("broker", "alice"),
        BalanceQuery(),
        auth=Auth.PAIR,
        sender="alice",
        recipient="broker",
        counter=1,
        now=NOW,
        key=KEY,
    )
    with pytest.raises(AuthenticationError):
        verify_mac(parse(payload), topics.inbox("broker", "bob"), KEY)
    with pytest.raises(AuthenticationError):
        verify_mac(parse(payload), topics.inbox("broker", "alice"), MacKey(b"x" * 32))


@pytest.mark.parametrize("payload", [b"", b"\x07" + b"\x00" * 40, b"\x00" + b"\x00" * 32])
def test_malformed_envelopes_are_typed_errors(payload: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        parse(payload)


def test_chain_links_are_position_bound() -> None:
    chain = HashChain(b"s" * 32, 8)
    assert step(chain.word(5), 5) == chain.word(4)
    assert step(chain.word(5), 6) != chain.word(4)
    assert extends(chain.word(8), 8, chain.root, 0)
    assert not extends(chain.word(3), 3, chain.word(3), 3)
    assert not extends(chain.word(2), 2, chain.word(3), 3)
    with pytest.raises(LocalProtocolError):
        chain.word(9)
    with pytest.raises(LocalProtocolError):
        HashChain(b"short", 8)


def test_topic_filters_match_like_mqtt() -> None:
    assert topics.matches(topics.inbox_filter("shop"), topics.inbox("shop", "alice"))
    assert not topics.matches(topics.inbox_filter("shop"), topics.inbox("shop2", "alice"))
    assert topics.matches(topics.public_filter("offer"), topics.public("shop", "offer"))
    assert topics.matches("micropay/#", topics.public("shop", "offer"))
    assert topics.split("elsewhere/v1/in/a/b") is None
    assert topics.split(topics.inbox("shop", "alice")) == ("in", "shop", "alice")


def test_mac_keys_must_be_32_bytes() -> None:
    with pytest.raises(LocalProtocolError):
        MacKey(b"short")
