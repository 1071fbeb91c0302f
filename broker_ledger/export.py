"""Export ledger events to JSON Lines and CSV for other tools.

Each record carries the stored columns (sequence, stream, version, type, schema, time,
link hash) and the decoded body; bytes are lowercase hex. Reading is read-only and in
chunks, so exporting a large ledger needs little memory.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec

from broker_ledger.codec import DEFAULT_CODEC, EventCodec, EventDecodeError

COLUMNS = ("seq", "stream", "version", "type", "schema", "at", "hash", "body")


def _plain(value: Any) -> Any:  # noqa: ANN401 - any decoded body value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def records(path: Path, codec: EventCodec = DEFAULT_CODEC) -> Iterator[dict[str, Any]]:
    """Every event as a JSON-ready dict, in sequence order."""
    with sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True) as db:
        cursor = db.execute(
            "SELECT seq, stream, version, type, schema, at, body, hash FROM event_log ORDER BY seq"
        )
        while rows := cursor.fetchmany(10_000):
            for seq, stream, version, kind, schema, at, body, digest in rows:
                try:
                    event = codec.decode(kind, schema, body)
                    decoded = _plain(msgspec.to_builtins(event, builtin_types=(bytes,)))
                except EventDecodeError as exc:
                    decoded = {"undecodable": str(exc), "raw": bytes(body).hex()}
                yield {
                    "seq": seq,
                    "stream": stream,
                    "version": version,
                    "type": kind,
                    "schema": schema,
                    "at": at,
                    "hash": bytes(digest).hex(),
                    "body": decoded,
                }


def write_jsonl(path: Path, out: TextIO, progress: Callable[[int], None] | None = None) -> int:
    """One JSON object per line; returns the number of events written."""
    count = 0
    for count, record in enumerate(records(path), start=1):
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
        if progress is not None and count % 10_000 == 0:
            progress(count)
    return count


def write_csv(path: Path, out: TextIO, progress: Callable[[int], None] | None = None) -> int:
    """One row per event, the body as a JSON string; returns the number written."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    count = 0
    for count, record in enumerate(records(path), start=1):
        record["body"] = json.dumps(record["body"], separators=(",", ":"))
        writer.writerow([record[column] for column in COLUMNS])
        if progress is not None and count % 10_000 == 0:
            progress(count)
    return count
