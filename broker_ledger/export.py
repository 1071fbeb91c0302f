"""Export ledger events to JSON Lines and CSV for other tools.

Each record carries the stored columns (sequence, stream, version, type, schema, time,
link hash) and the decoded body; bytes are lowercase hex. Reading is read-only and in
chunks, so exporting a large ledger needs little memory. The CSV is one row per event
with one scalar column per body field (the union over every event type, empty where a
type has no such field), so a spreadsheet or ``pandas`` reads it without parsing JSON;
billing lines, the one nested field, become their count there and stay whole in JSONL.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TextIO, get_args

import msgspec

from broker_ledger.codec import DEFAULT_CODEC, EventCodec, EventDecodeError
from protocol.broker_events import AnyBrokerEvent

COLUMNS = ("seq", "stream", "version", "type", "schema", "at", "hash")
UNDECODABLE = ("undecodable", "raw")


def _body_columns() -> tuple[str, ...]:
    """Every event type's body fields, in declaration order, each once."""
    names: dict[str, None] = {}
    for kind in get_args(AnyBrokerEvent):
        for name in kind.__struct_fields__:
            if name not in COLUMNS:
                names["line_count" if name == "lines" else name] = None
    return (*names, *UNDECODABLE)


BODY_COLUMNS: Final = _body_columns()
CSV_COLUMNS: Final = (*COLUMNS, *BODY_COLUMNS)


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
    with contextlib.closing(sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)) as db:
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
    """One row per event, a scalar per column; returns the number written."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for count, record in enumerate(records(path), start=1):
        body = record["body"]
        if "lines" in body:
            body["line_count"] = len(body.pop("lines"))
        writer.writerow(
            [record[column] for column in COLUMNS] + [body.get(c, "") for c in BODY_COLUMNS]
        )
        if progress is not None and count % 10_000 == 0:
            progress(count)
    return count
