"""Appending to the event store: one writer task, many requests per transaction.

Appends queue up while a transaction is in flight and the next transaction takes them
all, so durability (WAL, ``synchronous=FULL``) costs one fsync per batch, not per event.
With a signer, every transaction also signs the head it leaves (one Ed25519 signature
per group commit, in the same transaction), so the last event of a healthy ledger is
always covered by the broker's signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, cast

import aiosqlite

from broker_ledger.codec import DEFAULT_CODEC, EventCodec
from broker_ledger.format import GENESIS
from broker_ledger.store_batch import Batch, Row
from broker_ledger.store_errors import ConcurrencyError, LedgerError, LedgerWriterError
from broker_ledger.store_reader import LedgerReader
from broker_ledger.store_records import StoredEvent, StreamAppend
from broker_ledger.store_schema import INSERT_CHECKPOINT
from protocol.broker_events import AnyBrokerEvent, stream_of
from protocol.crypto import AgentKeys
from protocol.ledger_heads import sign_head
from protocol.messages import SignedHead
from protocol.trusted_keys import TrustedKeys

INSERT_EVENT: Final = (
    "INSERT INTO events (seq, stream_id, version, type, schema, at, body, hash)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_STREAM: Final = "INSERT INTO streams (id, name) VALUES (?, ?)"
SELECT_STREAMS: Final = (
    "SELECT streams.name, streams.id, MAX(events.version) FROM streams"
    " LEFT JOIN events ON events.stream_id = streams.id"
    " WHERE streams.name IN ({marks}) GROUP BY streams.id"
)


@dataclass(slots=True)
class _Request:
    appends: Sequence[StreamAppend]
    future: asyncio.Future[list[StoredEvent]]
    size: int


class LedgerWriter(LedgerReader):
    """Appends broker events through one writer task, signing the head of every commit."""

    def __init__(  # noqa: PLR0913 - collaborators and tuning knobs
        self,
        connection: aiosqlite.Connection,
        broker_id: str,
        *,
        codec: EventCodec = DEFAULT_CODEC,
        signer: AgentKeys | None = None,
        checkpoint_every: int = 10_000,
        max_batch: int = 5_000,
    ) -> None:
        super().__init__(connection, codec)
        self.broker_id = broker_id
        self._signer = signer
        self.keys = TrustedKeys.pinned_to(broker_id, signer.sign_key if signer else b"")
        """The broker's signing keys by the ledger's rotations (set when the file opens)."""
        self.checkpoint_every = checkpoint_every
        self.max_batch = max_batch
        self._streams: dict[str, tuple[int, int]] = {}  # name -> (id, version); id 0: new
        self._next_stream_id = 1
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

    def use_signer(self, signer: AgentKeys) -> None:
        """Sign the next commits with ``signer`` (a key rotation; the writer must be idle)."""
        self._signer = signer

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
        pending = Batch(dict(self._streams), self._next_stream_id, self._seq, self._head)
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

    async def flush(self) -> None:
        """Wait until every queued append is committed (or refused)."""
        if self._writer is not None:
            await self._queue.join()

    async def stream_version(self, stream: str) -> int:
        """The current version of a stream (0 when it has no events)."""
        await self._load_streams({stream})
        return self._streams[stream][1]

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
