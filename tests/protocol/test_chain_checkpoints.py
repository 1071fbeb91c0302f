"""A checkpointed chain gives every word the full chain gives, in any order of asking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.chain import HashChain, extends
from protocol.chain_checkpoints import CheckpointedChain, default_interval
from protocol.errors import LocalProtocolError


@given(
    seed=st.binary(min_size=32, max_size=32),
    length=st.integers(1, 300),
    data=st.data(),
)
def test_every_word_equals_the_full_chains(seed: bytes, length: int, data: st.DataObject) -> None:
    interval = data.draw(st.one_of(st.none(), st.integers(1, length + 3)))
    full = HashChain(seed, length)
    kept = CheckpointedChain(seed, length, interval)
    assert kept.root == full.root
    assert kept.length == length
    asked = data.draw(st.lists(st.integers(0, length), max_size=40))
    for index in [*asked, *range(length + 1)]:
        assert kept.word(index) == full.word(index)


def test_a_million_unit_chain_keeps_about_two_root_n_words() -> None:
    kept = CheckpointedChain(b"\x01" * 32, 10**6)
    assert kept.interval == default_interval(10**6) == 1000
    kept.word(123_456)  # fills one segment
    assert kept.stored_bytes <= 2 * 1001 * 32
    assert extends(kept.word(123_457), 123_457, kept.word(123_000), 123_000)


def test_out_of_range_index_and_interval_are_refused() -> None:
    kept = CheckpointedChain(b"\x02" * 32, 10)
    with pytest.raises(LocalProtocolError):
        kept.word(11)
    with pytest.raises(LocalProtocolError):
        CheckpointedChain(b"\x02" * 32, 10, 0)
    with pytest.raises(LocalProtocolError):
        CheckpointedChain(b"\x02" * 31, 10)
