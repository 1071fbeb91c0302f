"""One group commit's rows, linked request by request onto the chain's head.

A request that cannot be stored (a version clash, an event no column can hold) is
refused whole, before anything is written, and never stops the writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from broker_ledger.codec import EventCodec
from broker_ledger.format import link_hash
from broker_ledger.store_errors import ConcurrencyError, LedgerError
from broker_ledger.store_records import StoredEvent, StreamAppend

_MAX_COLUMN = 2**63 - 1

Row = tuple[int, int, int, str, int, int, bytes, bytes]


@dataclass(slots=True)
class Batch:
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


def _check_column(value: int) -> None:
    """SQLite stores signed 64-bit integers; anything larger is refused before the write."""
    if not 0 <= value <= _MAX_COLUMN:
        raise OverflowError(f"{value} does not fit a ledger column")
