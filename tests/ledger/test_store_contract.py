"""The event-store contract, written once; each backend runs it by subclassing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from broker_ledger.format import GENESIS, link_hash
from broker_ledger.store import (
    ConcurrencyError,
    EventStore,
    LedgerError,
    LedgerWriterError,
    StreamAppend,
)
from protocol.broker_events import AccountOpened, SettlementRecorded
from protocol.ledger_heads import verify_head
from tests.ledger.helpers import opened, settled
from tests.support.world import seeded_identity


class EventStoreContract:
    """What every event store must do. Subclasses provide the ``store`` fixture."""

    @pytest.mark.asyncio
    async def test_append_then_read_the_stream_back(self, store: EventStore) -> None:
        stored = await store.append("account:alice", [opened("alice"), settled("alice", 5)], 0)
        assert [(e.seq, e.version) for e in stored] == [(1, 1), (2, 2)]
        events = [store.decode(e) for e in await store.read_stream("account:alice")]
        assert isinstance(events[0], AccountOpened)
        assert isinstance(events[1], SettlementRecorded)
        assert events[1].amount == 5
        assert await store.stream_version("account:alice") == 2
        assert await store.stream_version("account:nobody") == 0

    @pytest.mark.asyncio
    async def test_a_stale_expected_version_is_a_concurrency_error(self, store: EventStore) -> None:
        await store.append("account:alice", [opened("alice")], 0)
        with pytest.raises(ConcurrencyError):
            await store.append("account:alice", [settled("alice", 1)], 0)
        await store.append("account:alice", [settled("alice", 1)], 1)
        assert await store.stream_version("account:alice") == 2

    @pytest.mark.asyncio
    async def test_read_all_from_a_position(self, store: EventStore) -> None:
        for name in ("a", "b", "c", "d"):
            await store.append(f"account:{name}", [opened(name)])
        after_two = await store.read_all(after=2)
        assert [e.seq for e in after_two] == [3, 4]
        assert [e.stream for e in after_two] == ["account:c", "account:d"]
        assert [e.seq async for e in store.iterate(after=1, chunk=2)] == [2, 3, 4]

    @pytest.mark.asyncio
    async def test_group_commit_is_atomic_per_request(self, store: EventStore) -> None:
        await store.append("account:taken", [opened("taken")], 0)
        results = await asyncio.gather(
            store.append("account:x", [opened("x")], 0),
            store.append_many(
                [
                    StreamAppend("account:y", [opened("y")], 0),
                    StreamAppend("account:taken", [settled("taken", 9)], 0),  # stale
                ]
            ),
            store.append("account:z", [opened("z")], 0),
            return_exceptions=True,
        )
        assert isinstance(results[1], ConcurrencyError)
        assert not isinstance(results[0], BaseException)
        assert not isinstance(results[2], BaseException)
        assert await store.read_stream("account:y") == []  # all-or-nothing
        assert await store.stream_version("account:taken") == 1
        seqs = [e.seq for e in await store.read_all()]
        assert seqs == list(range(1, len(seqs) + 1))

    @pytest.mark.asyncio
    async def test_many_concurrent_appends_share_transactions(self, store: EventStore) -> None:
        await asyncio.gather(
            *(store.append(f"account:n{i}", [opened(f"n{i}")]) for i in range(300))
        )
        assert store.head[0] == 300
        assert store.transactions < 300

    @pytest.mark.asyncio
    async def test_every_row_is_hash_linked_to_the_previous(self, store: EventStore) -> None:
        await store.append_events([opened("a"), opened("b"), settled("a", 3)])
        previous = GENESIS
        for row in await store.read_all():
            expected = link_hash(
                previous, row.seq, row.stream, row.version, row.type, row.schema, row.at, row.body
            )
            assert row.hash == expected
            previous = row.hash
        assert store.head == (3, previous)

    @pytest.mark.asyncio
    async def test_every_commit_is_signed_in_its_own_transaction(self, store: EventStore) -> None:
        await store.append_events([opened("a"), opened("b")])
        await store.append_events([settled("a", 3)])
        signed = store.signed_head
        assert signed is not None
        assert (signed.seq, signed.head) == store.durable_head
        verify_head(seeded_identity("broker").sign_key, "broker", signed)

    @pytest.mark.asyncio
    async def test_an_unstorable_event_refuses_its_request_not_the_writer(
        self, store: EventStore
    ) -> None:
        results = await asyncio.gather(
            store.append("account:a", [opened("a")]),
            store.append("account:huge", [opened("huge", at=2**64)]),  # no ledger column holds it
            return_exceptions=True,
        )
        assert not isinstance(results[0], BaseException)
        assert isinstance(results[1], LedgerError)
        assert "cannot be stored" in str(results[1])
        await store.append("account:b", [opened("b")])  # the writer lives on
        assert [row.stream for row in await store.read_all()] == ["account:a", "account:b"]
        assert store.failure is None

    @pytest.mark.asyncio
    async def test_a_dead_writer_fails_every_waiting_append_and_says_so(
        self, store: EventStore
    ) -> None:
        await store.append("account:a", [opened("a")])
        await store.connection.close()  # the file is gone from under the writer
        results = await asyncio.gather(
            *(store.append(f"account:n{i}", [opened(f"n{i}")]) for i in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, LedgerWriterError) for r in results)
        async with asyncio.timeout(1):
            await store.wait_failed()
        with pytest.raises(LedgerWriterError):
            await store.append("account:late", [opened("late")])


class TestSqliteEventStore(EventStoreContract):
    @pytest_asyncio.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[EventStore]:
        store = await EventStore.open(
            tmp_path / "ledger.db", "broker", signer=seeded_identity("broker")
        )
        yield store
        await store.close()
