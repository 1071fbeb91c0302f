"""The records the event store takes and hands back: appends, stored rows, checkpoints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.broker_events import AnyBrokerEvent


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
