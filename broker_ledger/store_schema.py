"""The ledger file's SQLite layout, and the one migration of files written before it.

One ``events`` table: the global sequence is the primary key, ``UNIQUE(stream, version)``
is the optimistic-concurrency check, and every row carries the link hash of
``broker_ledger.format``. ``checkpoints`` keeps the latest signed head plus one every
``checkpoint_every`` events.
"""

from __future__ import annotations

from typing import Final, Literal

import aiosqlite

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
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


async def prepare(connection: aiosqlite.Connection, synchronous: Synchronous) -> None:
    """WAL at the durability asked for, the tables, and the migration of older files."""
    await connection.execute("PRAGMA journal_mode=WAL")
    await connection.execute(f"PRAGMA synchronous={synchronous}")
    await connection.executescript(SCHEMA)
    await _add_kept_column(connection)
    await connection.executescript(KEEP_LATEST)


async def _add_kept_column(connection: aiosqlite.Connection) -> None:
    """Ledgers written before every commit was signed: their checkpoints are all kept."""
    columns = {
        row[1] for row in await connection.execute_fetchall("PRAGMA table_info(checkpoints)")
    }
    if "kept" not in columns:
        await connection.execute(
            "ALTER TABLE checkpoints ADD COLUMN kept INTEGER NOT NULL DEFAULT 1"
        )
