"""The append-only, hash-linked event store on SQLite (through aiosqlite), with group commit.

One ``events`` table: the global sequence is the primary key, ``UNIQUE(stream, version)``
is the optimistic-concurrency check, and every row carries the link hash of
``broker_ledger.format``. Appends queue up while a transaction is in flight and the next
transaction takes them all, so durability (WAL, ``synchronous=FULL``) costs one fsync per
batch, not per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import aiosqlite

from broker_ledger.codec import DEFAULT_CODEC, EventCodec
from broker_ledger.format import GENESIS, TAG_CHECKPOINT, checkpoint_message, link_hash
from protocol.broker_events import AnyBrokerEvent, stream_of
from protocol.crypto import Identity

FORMAT: Final = "micropay-ledger/1"

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL REFERENCES streams (id),
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema INTEGER NOT NULL,
    at INTEGER NOT NULL,
    body BLOB NOT NULL,
    hash BLOB NOT NULL,
    UNIQUE (stream_id, version)
) STRICT;
CREATE VIEW IF NOT EXISTS event_log AS
    SELECT events.seq, streams.name AS stream, events.version, events.type, events.schema,
           events.at, events.body, events.hash
    FROM events JOIN streams ON streams.id = events.stream_id;
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    head BLOB NOT NULL,
    signature BLOB NOT NULL,
    at INTEGER NOT NULL
) STRICT;
"""


class LedgerError(Exception):
    """The ledger cannot do what was asked."""


class ConcurrencyError(LedgerError):
    """A stream was not at the version the writer expected: somebody appended first."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the events table."""

    seq: int
    stream: str
    version: int
    type: str
    schema: int
    at: int
    body: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed (sequence, head hash) pair."""

    seq: int
    head: bytes
    signature: bytes
    at: int


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events for one stream, at the version the writer expects (``None``: no check)."""

    stream: str
    events: Sequence[AnyBrokerEvent]
    expected_version: int | None = None


@dataclass(slots=True)
class _Request:
    appends: Sequence[StreamAppend]
    future: asyncio.Future[list[StoredEvent]]
    size: int


Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]
INSERT_EVENT: Final = (
    "INSERT INTO events (seq, stream_id, version, type, schema, at, body, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_STREAM: Final = "INSERT INTO streams (id, name) VALUES (?, ?)"
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
SELECT_STREAMS: Final = (
    "SELECT streams.name, streams.id, MAX(events.version) FROM streams"
    " LEFT JOIN events ON events.stream_id = streams.id"
    " WHERE streams.name IN ({marks}) GROUP BY streams.id"
)


class EventStore:
    """Appends and reads broker events; one writer process per ledger file."""

    def __init__(  # noqa: PLR0913 - collaborators and tuning knobs
        self,
        connection: aiosqlite.Connection,
        broker_id: str,
        *,
        codec: EventCodec = DEFAULT_CODEC,
        signer: Identity | None = None,
        checkpoint_every: int = 10_000,
        max_batch: int = 5_000,
    ) -> None:
        self._db = connection
        self.broker_id = broker_id
        self.codec = codec
        self._signer = signer
        self.checkpoint_every = checkpoint_every
        self.max_batch = max_batch
        self._streams: dict[str, tuple[int, int]] = {}  # name -> (id, version); id 0: new
        self._next_stream_id = 1
        self._seq = 0
        self._head = GENESIS
        self._durable: tuple[int, bytes] = (0, GENESIS)
        self._checkpointed = 0
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0

    # --- opening and closing -------------------------------------------------------------------

    @classmethod
    async def open(  # noqa: PLR0913 - path, identity and tuning
        cls,
        path: str | Path,
        broker_id: str,
        *,
        signer: Identity | None = None,
        synchronous: Synchronous = "FULL",
        codec: EventCodec = DEFAULT_CODEC,
        checkpoint_every: int = 10_000,
    ) -> EventStore:
        """Open (creating if needed) a ledger file that belongs to ``broker_id``."""
        connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute(f"PRAGMA synchronous={synchronous}")
            await connection.executescript(SCHEMA)
            store = cls(
                connection,
                broker_id,
                codec=codec,
                signer=signer,
                checkpoint_every=checkpoint_every,
            )
            await store._load_meta(signer)
            await store._load_head()
        except BaseException:
            await connection.close()
            raise
        return store

    async def _load_meta(self, signer: Identity | None) -> None:
        rows: dict[str, str] = {
            str(k): str(v)
            for k, v in await self._db.execute_fetchall("SELECT key, value FROM meta")
        }
        if not rows:
            meta = {"format": FORMAT, "broker_id": self.broker_id}
            if signer is not None:
                meta["broker_sign_key"] = signer.sign_key.hex()
            await self._db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
            return
        if rows.get("format") != FORMAT:
            raise LedgerError(f"not a {FORMAT} file (format {rows.get('format')!r})")
        if rows.get("broker_id") != self.broker_id:
            raise LedgerError(f"ledger belongs to broker {rows.get('broker_id')!r}")
        stored_key = rows.get("broker_sign_key")
        if signer is not None and stored_key not in (None, signer.sign_key.hex()):
            raise LedgerError("ledger was signed with another broker key")

    async def _load_head(self) -> None:
        async with self._db.execute(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
        ) as cur:
            row = await cur.fetchone()
        if row is not None:
            self._seq, self._head = int(row[0]), bytes(row[1])
            self._durable = (self._seq, self._head)
        async with self._db.execute("SELECT MAX(seq) FROM checkpoints") as cur:
            row = await cur.fetchone()
        self._checkpointed = int(row[0]) if row and row[0] is not None else 0
        async with self._db.execute("SELECT MAX(id) FROM streams") as cur:
            row = await cur.fetchone()
        self._next_stream_id = (int(row[0]) if row and row[0] is not None else 0) + 1

    async def close(self) -> None:
        """Finish queued appends, write a final checkpoint, close the file."""
        if self._writer is not None:
            await self._queue.join()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        if self._signer is not None and self._seq > self._checkpointed:
            await self._db.execute("BEGIN IMMEDIATE")
            await self._insert_checkpoint()
            await self._db.execute("COMMIT")
        await self._db.close()

    # --- appending -----------------------------------------------------------------------------

    @property
    def head(self) -> tuple[int, bytes]:
        """The last written sequence number and its link hash (its commit may be running)."""
        return self._seq, self._head

    @property
    def durable_head(self) -> tuple[int, bytes]:
        """The last sequence number and link hash whose transaction has committed."""
        return self._durable

    async def append(
        self, stream: str, events: Sequence[AnyBrokerEvent], expected_version: int | None = None
    ) -> list[StoredEvent]:
        """Append events to one stream, atomically; ``ConcurrencyError`` on a version clash."""
        return await self.append_many([StreamAppend(stream, events, expected_version)])

    async def append_events(self, events: Sequence[AnyBrokerEvent]) -> list[StoredEvent]:
        """Append a broker's events to their own streams, all in one transaction."""
        streams: dict[str, list[AnyBrokerEvent]] = {}
        for event in events:
            streams.setdefault(stream_of(event), []).append(event)
        return await self.append_many([StreamAppend(s, e) for s, e in streams.items()])

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        """Append to several streams all-or-nothing, grouped with concurrent appends."""
        size = sum(len(a.events) for a in appends)
        if size == 0:
            return []
        future: asyncio.Future[list[StoredEvent]] = asyncio.get_running_loop().create_future()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="ledger-writer")
        self._queue.put_nowait(_Request(appends, future, size))
        return await future

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            rows = batch[0].size
            while rows < self.max_batch and not self._queue.empty():
                request = self._queue.get_nowait()
                batch.append(request)
                rows += request.size
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[_Request]) -> None:
        await self._load_streams({a.stream for r in batch for a in r.appends})
        streams = dict(self._streams)
        next_id = self._next_stream_id
        seq, head = self._seq, self._head
        rows: list[tuple[int, int, int, str, int, int, bytes, bytes]] = []
        new_streams: list[tuple[int, str]] = []
        accepted: list[tuple[_Request, list[StoredEvent]]] = []
        refused: list[tuple[_Request, LedgerError]] = []
        encode = self.codec.encode
        for request in batch:
            clash = next(
                (
                    a
                    for a in request.appends
                    if a.expected_version is not None and streams[a.stream][1] != a.expected_version
                ),
                None,
            )
            if clash is not None:
                current = streams[clash.stream][1]
                refused.append(
                    (
                        request,
                        ConcurrencyError(
                            f"stream {clash.stream} is at version {current},"
                            f" not {clash.expected_version}"
                        ),
                    )
                )
                continue
            stored: list[StoredEvent] = []
            for append in request.appends:
                name = append.stream
                stream_id, version = streams[name]
                if stream_id == 0:
                    stream_id, next_id = next_id, next_id + 1
                    new_streams.append((stream_id, name))
                for event in append.events:
                    seq += 1
                    version += 1
                    kind, schema, body = encode(event)
                    head = link_hash(head, seq, name, version, kind, schema, event.at, body)
                    stored.append(
                        StoredEvent(seq, name, version, kind, schema, event.at, body, head)
                    )
                    rows.append((seq, stream_id, version, kind, schema, event.at, body, head))
                streams[name] = (stream_id, version)
            accepted.append((request, stored))
        if rows:
            await self._write(rows, new_streams, seq, head, accepted, refused)
            if accepted:
                self._streams, self._next_stream_id = streams, next_id
                for request, stored in accepted:
                    request.future.set_result(stored)
        # Refusals are reported only once the batch is durable, so a refused writer that
        # reads back sees the winner's events.
        for request, error in refused:
            request.future.set_exception(error)

    async def _write(  # noqa: PLR0913 - the batch and where it leaves the chain
        self,
        rows: list[tuple[int, int, int, str, int, int, bytes, bytes]],
        new_streams: list[tuple[int, str]],
        seq: int,
        head: bytes,
        accepted: list[tuple[_Request, list[StoredEvent]]],
        refused: list[tuple[_Request, LedgerError]],
    ) -> None:
        previous = (self._seq, self._head, self._checkpointed)
        try:
            await self._db.execute("BEGIN IMMEDIATE")
            if new_streams:
                await self._db.executemany(INSERT_STREAM, new_streams)
            await self._db.executemany(INSERT_EVENT, rows)
            self._seq, self._head = seq, head
            if self._signer is not None and seq - self._checkpointed >= self.checkpoint_every:
                await self._insert_checkpoint()
            await self._db.execute("COMMIT")
            self._durable = (seq, head)
        except sqlite3.Error as exc:
            self._seq, self._head, self._checkpointed = previous
            with contextlib.suppress(sqlite3.Error):
                await self._db.execute("ROLLBACK")
            self._streams.clear()
            kind = ConcurrencyError if isinstance(exc, sqlite3.IntegrityError) else LedgerError
            for request, _ in accepted:
                refused.append((request, kind(f"append failed, nothing written: {exc}")))
            accepted.clear()
            return
        self.transactions += 1

    async def _load_streams(self, names: set[str]) -> None:
        unknown = [name for name in names if name not in self._streams]
        for start in range(0, len(unknown), 500):
            chunk = unknown[start : start + 500]
            found = dict.fromkeys(chunk, (0, 0))
            query = SELECT_STREAMS.format(marks=",".join("?" * len(chunk)))
            async with self._db.execute(query, chunk) as cursor:
                async for name, stream_id, version in cursor:
                    found[str(name)] = (int(stream_id), int(version or 0))
            self._streams.update(found)

    async def _insert_checkpoint(self) -> None:
        if self._signer is None:
            return
        signature = self._signer.sign(
            TAG_CHECKPOINT, checkpoint_message(self.broker_id, self._seq, self._head)
        )
        await self._db.execute(
            "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
            (self._seq, self._head, signature, int(time.time() * 1000)),
        )
        self._checkpointed = self._seq

    async def checkpoint(self) -> None:
        """Sign the current head now (also done every ``checkpoint_every`` events)."""
        if self._writer is not None:
            await self._queue.join()
        if self._signer is None:
            raise LedgerError("this store has no signing key")
        await self._db.execute("BEGIN IMMEDIATE")
        await self._insert_checkpoint()
        await self._db.execute("COMMIT")

    # --- reading -------------------------------------------------------------------------------

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

    async def flush(self) -> None:
        """Wait until every queued append is committed (or refused)."""
        if self._writer is not None:
            await self._queue.join()

    async def stream_version(self, stream: str) -> int:
        """The current version of a stream (0 when it has no events)."""
        await self._load_streams({stream})
        return self._streams[stream][1]

    async def checkpoints(self) -> list[Checkpoint]:
        """Every signed checkpoint, in order."""
        rows = await self._db.execute_fetchall("SELECT seq, head, signature, at FROM checkpoints")
        return [Checkpoint(int(r[0]), bytes(r[1]), bytes(r[2]), int(r[3])) for r in rows]

    def decode(self, stored: StoredEvent) -> AnyBrokerEvent:
        """The event a row holds, upcast to the current schema."""
        return self.codec.decode(stored.type, stored.schema, stored.body)

    @property
    def connection(self) -> aiosqlite.Connection:
        """The underlying connection, for projections that commit with their position."""
        return self._db


def _row(row: Any) -> StoredEvent:  # noqa: ANN401 - a SQLite row tuple
    seq, stream, version, kind, schema, at, body, digest = row
    return StoredEvent(seq, stream, version, kind, schema, at, bytes(body), bytes(digest))
