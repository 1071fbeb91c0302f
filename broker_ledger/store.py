"""The append-only, hash-linked event store on SQLite (through aiosqlite), with group commit.

One ``events`` table: the global sequence is the primary key, ``UNIQUE(stream, version)``
is the optimistic-concurrency check, and every row carries the link hash of
``broker_ledger.format``. Appends queue up while a transaction is in flight and the next
transaction takes them all, so durability (WAL, ``synchronous=FULL``) costs one fsync per
batch, not per event.

With a signer, every transaction also signs the head it leaves (one Ed25519 signature
per group commit, in the same transaction), so the last event of a healthy ledger is
always covered by the broker's signature. The ``checkpoints`` table keeps that latest
signed head plus one every ``checkpoint_every`` events. Opening a ledger with a signer
first checks the latest checkpoint's signature and the links after it: a ledger with an
unsigned tail, a missing event or a signature that does not verify is refused before
anything is appended or signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

import aiosqlite

from broker_ledger.codec import DEFAULT_CODEC, EventCodec
from broker_ledger.format import GENESIS, link_hash
from protocol.broker_events import AnyBrokerEvent, stream_of
from protocol.crypto import Identity
from protocol.errors import LedgerHeadError
from protocol.ledger_heads import sign_head, verify_head
from protocol.messages import SignedHead

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
# Every commit inserts its signed head; the one before is dropped unless it was kept (one
# per ``checkpoint_every`` events), in the same statement, so signing costs one round trip.
KEEP_LATEST: Final = """
CREATE TRIGGER IF NOT EXISTS checkpoints_keep_latest AFTER INSERT ON checkpoints
BEGIN DELETE FROM checkpoints WHERE seq < NEW.seq AND kept = 0; END;
"""
INSERT_CHECKPOINT: Final = (
    "INSERT OR REPLACE INTO checkpoints (seq, head, signature, at, kept) VALUES (?, ?, ?, ?, ?)"
)


class LedgerError(Exception):
    """The ledger cannot do what was asked."""


class ConcurrencyError(LedgerError):
    """A stream was not at the version the writer expected: somebody appended first."""


class LedgerIntegrityError(LedgerError):
    """The ledger file does not match the broker's signatures: tampered, truncated or torn."""

    def __init__(self, path: str | Path, seq: int, detail: str) -> None:
        super().__init__(
            f"{path} fails its integrity check at seq {seq}: {detail};"
            f" run `micropay audit {path} --broker-key ...` for the whole story"
        )
        self.seq = seq


class LedgerWriterError(LedgerError):
    """The writer task died; nothing more can be appended by this process."""


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
        self.path = Path("ledger.db")
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
        self._signed: SignedHead | None = None  # the latest durable signed head
        self._unsigned_from = 1  # the first event no signature covers (past the end: none)
        self._kept = 0  # the latest checkpoint kept for good (one per ``checkpoint_every``)
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self._failed = asyncio.Event()
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
        unsigned_tail: bool = False,
    ) -> EventStore:
        """Open (creating if needed) a ledger file that belongs to ``broker_id``.

        ``unsigned_tail`` admits a ledger whose last events no signature covers (links
        still checked), only so that ``sign_tail`` can adopt them after an audit.

        A new file is created 0600 before SQLite opens it; SQLite gives its WAL and
        shared-memory files the same mode.
        """
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        connection = await aiosqlite.connect(path, isolation_level=None)
        try:
            await connection.execute("PRAGMA journal_mode=WAL")
            await connection.execute(f"PRAGMA synchronous={synchronous}")
            await connection.executescript(SCHEMA)
            await _add_kept_column(connection)
            await connection.executescript(KEEP_LATEST)
            store = cls(
                connection,
                broker_id,
                codec=codec,
                signer=signer,
                checkpoint_every=checkpoint_every,
            )
            store.path = Path(path)
            await store._load_meta(signer)
            await store._load_head()
            if signer is not None:
                await store._check_signed_tail(path, signer, unsigned_tail=unsigned_tail)
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
            await self._db.execute("BEGIN IMMEDIATE")
            await self._db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
            if signer is not None:
                await self._insert_checkpoint()  # the empty ledger is the broker's too
            await self._db.execute("COMMIT")
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
        async with self._db.execute("SELECT MAX(id) FROM streams") as cur:
            row = await cur.fetchone()
        self._next_stream_id = (int(row[0]) if row and row[0] is not None else 0) + 1

    async def _check_signed_tail(
        self, path: str | Path, signer: Identity, *, unsigned_tail: bool = False
    ) -> None:
        """Refuse a ledger whose last event is not covered by a valid broker signature.

        Checks the latest checkpoint's signature, that the event it names holds its hash,
        and the links of every event after it (there are none in a healthy ledger: every
        commit is signed). Costs one signature check and a handful of reads.
        """
        checkpoints = list(
            await self._db.execute_fetchall(
                "SELECT seq, head, signature FROM checkpoints ORDER BY seq DESC LIMIT 1"
            )
        )
        last = self._seq
        if not checkpoints:
            if last and not unsigned_tail:
                raise LedgerIntegrityError(path, 1, f"no signed checkpoint covers events 1..{last}")
            self._unsigned_from = 1
            if last:
                await self._check_links(path, 0, GENESIS, last)
            return
        seq, signed_head, signature = (
            int(checkpoints[0][0]),
            bytes(checkpoints[0][1]),
            bytes(checkpoints[0][2]),
        )
        signed = SignedHead(seq, signed_head, signature)
        try:
            verify_head(signer.sign_key, self.broker_id, signed)
        except LedgerHeadError as exc:
            raise LedgerIntegrityError(
                path, seq, "the checkpoint signature does not verify"
            ) from exc
        if seq > last:
            raise LedgerIntegrityError(
                path, last + 1, f"a signed checkpoint covers {seq} but the ledger ends at {last}"
            )
        stored = GENESIS
        if seq:
            rows = list(
                await self._db.execute_fetchall("SELECT hash FROM events WHERE seq = ?", (seq,))
            )
            stored = bytes(rows[0][0]) if rows else b""
        if stored != signed_head:
            raise LedgerIntegrityError(path, seq, "the event differs from the signed checkpoint")
        await self._check_links(path, seq, signed_head, last)
        if last > seq and not unsigned_tail:
            raise LedgerIntegrityError(
                path, seq + 1, f"events {seq + 1}..{last} are not covered by a broker signature"
            )
        self._unsigned_from = seq + 1
        self._signed = signed
        kept = await self._db.execute_fetchall("SELECT MAX(seq) FROM checkpoints WHERE kept")
        self._kept = int(next(iter(kept))[0] or 0)

    async def _check_links(self, path: str | Path, seq: int, head: bytes, last: int) -> None:
        """Every link after ``seq`` (whose hash is ``head``) recomputed up to ``last``."""
        link = head
        async for row in self.iterate(after=seq):
            if row.seq > last:
                break
            link = link_hash(
                link, row.seq, row.stream, row.version, row.type, row.schema, row.at, row.body
            )
            if link != row.hash:
                raise LedgerIntegrityError(path, row.seq, "the event's link hash does not match")

    @property
    def unsigned_from(self) -> int:
        """The first event no broker signature covers (past the last event: none)."""
        return self._unsigned_from

    async def sign_tail(self, through: int) -> SignedHead:
        """Sign the head over events no signature covers (a ledger of an earlier version).

        ``through`` must be the last event: the operator states what the audit it ran
        has seen, and nothing appended since can slip in.
        """
        if self._signer is None:
            raise LedgerError("this store has no signing key")
        if through != self._seq:
            raise LedgerError(
                f"the ledger ends at {self._seq}, not {through}: audit it again and name its"
                " last event"
            )
        if self._unsigned_from > self._seq:
            raise LedgerError(f"nothing to sign: events up to {self._seq} are already signed")
        await self._db.execute("BEGIN IMMEDIATE")
        await self._insert_checkpoint()
        await self._db.execute("COMMIT")
        assert self._signed is not None  # noqa: S101 - a signer is present, checked above
        return self._signed

    async def close(self) -> None:
        """Finish queued appends (every commit is already signed), close the file."""
        if self._writer is not None:
            if not self._writer.done():
                await self._queue.join()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, LedgerWriterError):
                await self._writer
            self._writer = None
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

    @property
    def signed_head(self) -> SignedHead | None:
        """The broker's signature over the durable head (``None`` without a signer)."""
        return self._signed

    async def append(
        self, stream: str, events: Sequence[AnyBrokerEvent], expected_version: int | None = None
    ) -> list[StoredEvent]:
        """Append events to one stream, atomically; ``ConcurrencyError`` on a version clash."""
        return await self.append_many([StreamAppend(stream, events, expected_version)])

    async def append_events(self, events: Sequence[AnyBrokerEvent]) -> list[StoredEvent]:
        """Append a broker's events to their own streams, all in one transaction.

        Returns the stored rows in the order the events were given.
        """
        streams: dict[str, list[int]] = {}
        for position, event in enumerate(events):
            streams.setdefault(stream_of(event), []).append(position)
        stored = await self.append_many(
            [StreamAppend(s, [events[p] for p in ps]) for s, ps in streams.items()]
        )
        order = [position for positions in streams.values() for position in positions]
        in_order: list[StoredEvent] = [stored[0]] * len(stored)
        for row, position in zip(stored, order, strict=True):
            in_order[position] = row
        return in_order

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[StoredEvent]:
        """Append to several streams all-or-nothing, grouped with concurrent appends."""
        size = sum(len(a.events) for a in appends)
        if size == 0:
            return []
        if self.failure is not None:
            raise LedgerWriterError(f"the ledger writer stopped: {self.failure!r}")
        future: asyncio.Future[list[StoredEvent]] = asyncio.get_running_loop().create_future()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="ledger-writer")
        self._queue.put_nowait(_Request(appends, future, size))
        return await future

    async def _write_loop(self) -> None:
        """Commit batches until cancelled; if anything unforeseen breaks it, fail loudly.

        Every waiting writer gets the error (nobody waits forever on a dead task) and the
        task ends with it, so a daemon watching the task can stop instead of freezing.
        """
        while True:
            batch = [await self._queue.get()]
            rows = batch[0].size
            while rows < self.max_batch and not self._queue.empty():
                request = self._queue.get_nowait()
                batch.append(request)
                rows += request.size
            try:
                await self._commit(batch)
            except Exception as exc:
                self.failure = exc
                self._failed.set()
                self._fail_waiting(batch, exc)
                raise LedgerWriterError(f"the ledger writer stopped: {exc!r}") from exc
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _fail_waiting(self, batch: list[_Request], exc: Exception) -> None:
        error = LedgerWriterError(f"the ledger writer stopped, nothing was written: {exc!r}")
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
            self._queue.task_done()
        for request in batch:
            if not request.future.done():
                request.future.set_exception(error)

    async def wait_failed(self) -> None:
        """Return once the writer has died (a daemon must then stop)."""
        await self._failed.wait()

    async def _commit(self, batch: list[_Request]) -> None:
        await self._load_streams({a.stream for r in batch for a in r.appends})
        pending = _Batch(dict(self._streams), self._next_stream_id, self._seq, self._head)
        accepted: list[tuple[_Request, list[StoredEvent]]] = []
        refused: list[tuple[_Request, LedgerError]] = []
        for request in batch:
            try:
                accepted.append((request, pending.add(request.appends, self.codec)))
            except LedgerError as error:
                refused.append((request, error))
        if pending.rows:
            await self._write(
                pending.rows, pending.new_streams, pending.seq, pending.head, accepted, refused
            )
            if accepted:
                self._streams, self._next_stream_id = pending.streams, pending.next_id
                for request, stored in accepted:
                    request.future.set_result(stored)
        # Refusals are reported only once the batch is durable, so a refused writer that
        # reads back sees the winner's events.
        for request, refusal in refused:
            request.future.set_exception(refusal)

    async def _write(  # noqa: PLR0913 - the batch and where it leaves the chain
        self,
        rows: list[Row],
        new_streams: list[tuple[int, str]],
        seq: int,
        head: bytes,
        accepted: list[tuple[_Request, list[StoredEvent]]],
        refused: list[tuple[_Request, LedgerError]],
    ) -> None:
        signer, broker_id = self._signer, self.broker_id
        keep = seq - self._kept >= self.checkpoint_every

        def transaction(db: sqlite3.Connection) -> SignedHead | None:
            """BEGIN .. COMMIT in one hop to SQLite's thread (each hop costs ~100 µs).

            The head is signed there too, off the event loop, inside the transaction it
            covers: a crash leaves either the events with their signature, or neither.
            """
            db.execute("BEGIN IMMEDIATE")
            try:
                if new_streams:
                    db.executemany(INSERT_STREAM, new_streams)
                db.executemany(INSERT_EVENT, rows)
                signed = None if signer is None else sign_head(signer, broker_id, seq, head)
                if signed is not None:
                    stamp = int(time.time() * 1000)
                    db.execute(
                        INSERT_CHECKPOINT,
                        (signed.seq, signed.head, signed.signature, stamp, int(keep)),
                    )
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            return signed

        try:
            # aiosqlite runs every call on its own thread; these two (stable since 0.17)
            # let a whole transaction be one call instead of one per statement.
            connection = self._db._conn  # noqa: SLF001
            run_on_thread = cast(
                "Callable[..., Awaitable[SignedHead | None]]",
                self._db._execute,  # noqa: SLF001
            )
            signed = await run_on_thread(transaction, connection)
        except sqlite3.Error as exc:
            self._streams.clear()
            kind = ConcurrencyError if isinstance(exc, sqlite3.IntegrityError) else LedgerError
            for request, _ in accepted:
                refused.append((request, kind(f"append failed, nothing written: {exc}")))
            accepted.clear()
            return
        self._seq, self._head = seq, head
        self._durable = (seq, head)
        if signed is not None:
            self._signed, self._unsigned_from = signed, seq + 1
            if keep:
                self._kept = seq
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
        """Sign the current head and keep it for good, inside the caller's transaction.

        For the empty ledger at creation and an adopted tail; commits sign in ``_write``.
        """
        if self._signer is None:
            return
        signed = sign_head(self._signer, self.broker_id, self._seq, self._head)
        stamp = int(time.time() * 1000)
        await self._db.execute(
            INSERT_CHECKPOINT, (signed.seq, signed.head, signed.signature, stamp, 1)
        )
        self._signed, self._kept, self._unsigned_from = signed, signed.seq, signed.seq + 1

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


_MAX_COLUMN = 2**63 - 1


Row = tuple[int, int, int, str, int, int, bytes, bytes]


@dataclass(slots=True)
class _Batch:
    """Where one transaction leaves the chain, built request by request (all or nothing)."""

    streams: dict[str, tuple[int, int]]  # name -> (id, version); id 0: new
    next_id: int
    seq: int
    head: bytes
    rows: list[Row] = field(default_factory=list)
    new_streams: list[tuple[int, str]] = field(default_factory=list)

    def add(self, appends: Sequence[StreamAppend], codec: EventCodec) -> list[StoredEvent]:
        """Link one request's events after the batch so far; refuse it whole on a problem."""
        for append in appends:
            current = self.streams[append.stream][1]
            if append.expected_version is not None and current != append.expected_version:
                raise ConcurrencyError(
                    f"stream {append.stream} is at version {current}, not {append.expected_version}"
                )
        seq, head, next_id = self.seq, self.head, self.next_id
        streams: dict[str, tuple[int, int]] = {}
        rows: list[Row] = []
        created: list[tuple[int, str]] = []
        stored: list[StoredEvent] = []
        try:
            for append in appends:
                name = append.stream
                stream_id, version = streams.get(name, self.streams[name])
                if stream_id == 0:
                    stream_id, next_id = next_id, next_id + 1
                    created.append((stream_id, name))
                for event in append.events:
                    seq, version = seq + 1, version + 1
                    kind, schema, body = codec.encode(event)
                    _check_column(event.at)
                    head = link_hash(head, seq, name, version, kind, schema, event.at, body)
                    stored.append(
                        StoredEvent(seq, name, version, kind, schema, event.at, body, head)
                    )
                    rows.append((seq, stream_id, version, kind, schema, event.at, body, head))
                streams[name] = (stream_id, version)
        except (TypeError, ValueError, OverflowError) as exc:
            # One unstorable event refuses its own request, never the writer.
            raise LedgerError(f"event cannot be stored, nothing written: {exc}") from exc
        self.seq, self.head, self.next_id = seq, head, next_id
        self.streams.update(streams)
        self.rows.extend(rows)
        self.new_streams.extend(created)
        return stored


async def _add_kept_column(connection: aiosqlite.Connection) -> None:
    """Ledgers written before every commit was signed: their checkpoints are all kept."""
    columns = {
        row[1] for row in await connection.execute_fetchall("PRAGMA table_info(checkpoints)")
    }
    if "kept" not in columns:
        await connection.execute(
            "ALTER TABLE checkpoints ADD COLUMN kept INTEGER NOT NULL DEFAULT 1"
        )


def _check_column(value: int) -> None:
    """SQLite stores signed 64-bit integers; anything larger is refused before the write."""
    if not 0 <= value <= _MAX_COLUMN:
        raise OverflowError(f"{value} does not fit a ledger column")


def _row(row: Any) -> StoredEvent:  # noqa: ANN401 - a SQLite row tuple
    seq, stream, version, kind, schema, at, body, digest = row
    return StoredEvent(seq, stream, version, kind, schema, at, bytes(body), bytes(digest))
