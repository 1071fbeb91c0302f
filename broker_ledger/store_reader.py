"""Reading the event store: streams, ranges, types, checkpoints, and the verified replay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

from broker_ledger.codec import EventCodec, EventDecodeError
from broker_ledger.format import GENESIS, link_hash
from broker_ledger.store_errors import LedgerIntegrityError
from broker_ledger.store_records import Checkpoint, StoredEvent
from protocol.broker_events import AnyBrokerEvent

T = TypeVar("T")

SELECT_STREAM: Final = (
    "SELECT seq, stream, version, type, schema, at, body, hash FROM event_log"
    " WHERE stream = ? ORDER BY version"
)
SELECT_AFTER: Final = (
    "SELECT seq, stream, version, type, schema, at, body, hash FROM event_log"
    " WHERE seq > ? ORDER BY seq LIMIT ?"
)
SELECT_TYPE: Final = (
    "SELECT seq, stream, version, type, schema, at, body, hash FROM event_log"
    " WHERE type = ? AND seq > ? AND seq <= ? ORDER BY seq"
)
SELECT_LAST_OF_TYPE: Final = (
    "SELECT seq, stream, version, type, schema, at, body, hash FROM event_log"
    " WHERE type = ? ORDER BY seq DESC LIMIT 1"
)


class LedgerReader:
    """Reads a ledger file's events; the writer and the opened store build on it."""

    def __init__(self, connection: aiosqlite.Connection, codec: EventCodec) -> None:
        self._db = connection
        self.path = Path("ledger.db")
        self.codec = codec
        self._seq = 0  # the last event this process knows of (its commit may be running)

    async def read_stream(self, stream: str) -> list[StoredEvent]:
        """Every event of one stream, in version order."""
        return [_row(r) for r in await self._db.execute_fetchall(SELECT_STREAM, (stream,))]

    async def read_all(self, after: int = 0, limit: int = 10_000) -> list[StoredEvent]:
        """Up to ``limit`` events with ``seq > after``, in order."""
        return [_row(r) for r in await self._db.execute_fetchall(SELECT_AFTER, (after, limit))]

    async def iterate(self, after: int = 0, chunk: int = 10_000) -> AsyncIterator[StoredEvent]:
        """Every event after ``after``, fetched in chunks."""
        position = after
        while rows := await self.read_all(position, chunk):
            for row in rows:
                yield row
            position = rows[-1].seq

    async def replay(self) -> AsyncIterator[StoredEvent]:
        """Every event from the first, each link recomputed: a ledger edited anywhere stops it.

        With ``open``'s check of the latest signed checkpoint, a full replay proves the
        whole history is the one the broker signed.
        """
        link, expected = GENESIS, 1
        async for row in self.iterate():
            if row.seq != expected:
                raise LedgerIntegrityError(self.path, expected, f"event {expected} is missing")
            link = link_hash(
                link, row.seq, row.stream, row.version, row.type, row.schema, row.at, row.body
            )
            if link != row.hash:
                raise LedgerIntegrityError(
                    self.path, row.seq, "the event's link hash does not match"
                )
            expected += 1
            yield row

    async def read_type(
        self, event_type: str, after: int = 0, through: int | None = None
    ) -> list[StoredEvent]:
        """Every event of one type with ``after < seq <= through``, in order."""
        limit = self._seq if through is None else through
        rows = await self._db.execute_fetchall(SELECT_TYPE, (event_type, after, limit))
        return [_row(r) for r in rows]

    async def last_of_type(self, event_type: str) -> StoredEvent | None:
        """The most recent event of one type, if any."""
        async with self._db.execute(SELECT_LAST_OF_TYPE, (event_type,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _row(row)

    async def checkpoints(self) -> list[Checkpoint]:
        """Every signed checkpoint, in order."""
        rows = await self._db.execute_fetchall("SELECT seq, head, signature, at FROM checkpoints")
        return [Checkpoint(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3])) for r in rows]

    def decode(self, stored: StoredEvent) -> AnyBrokerEvent:
        """The event a row holds, upcast to the current schema."""
        return self.codec.decode(stored.type, stored.schema, stored.body)

    def decode_as(self, cls: type[T], stored: StoredEvent) -> T:
        """The event of a row a query selected by type; another type is a corrupt row."""
        event = self.decode(stored)
        if not isinstance(event, cls):
            raise EventDecodeError(f"event {stored.seq} is a {stored.type}, not a {cls.__name__}")
        return event

    @property
    def connection(self) -> aiosqlite.Connection:
        """The underlying connection, for projections that commit with their position."""
        return self._db


def _row(row: Any) -> StoredEvent:  # noqa: ANN401 - a SQLite row tuple
    seq, stream, version, kind, schema, at, body, digest = row
    return StoredEvent(seq, stream, version, kind, schema, at, bytes(body), bytes(digest))
