"""Event bodies as MessagePack maps, with schema versions and upcasting on read.

Bodies are maps (field names, not positions) so that a field can be added with a default
without touching old rows. When a field's meaning changes, the type's schema version is
raised and an upcaster turns the old map into the new one on read: old events keep
replaying, and the stored bytes (which the hash chain covers) are never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

from protocol.broker_events import BROKER_EVENT_TYPES, AnyBrokerEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventDecodeError(Exception):
    """A stored body that no known schema (after upcasting) accepts."""


def _tag(cls: type[Any]) -> str:
    tag = msgspec.inspect.type_info(cls).tag  # type: ignore[attr-defined]
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__name__} has no string tag")
    return tag


EVENT_CLASSES: Final[dict[str, type[Any]]] = {_tag(cls): cls for cls in BROKER_EVENT_TYPES}


class EventCodec:
    """Encodes current events; decodes any stored version, upcasting old ones."""

    def __init__(
        self,
        versions: Mapping[str, int] | None = None,
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
    ) -> None:
        self.versions = dict(versions or dict.fromkeys(EVENT_CLASSES, 1))
        self.upcasters = dict(upcasters or {})
        self._encoder = msgspec.msgpack.Encoder()
        self._tags: dict[type[Any], str] = {cls: name for name, cls in EVENT_CLASSES.items()}
        self._decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {
            name: msgspec.msgpack.Decoder(cls) for name, cls in EVENT_CLASSES.items()
        }

    def encode(self, event: AnyBrokerEvent) -> tuple[str, int, bytes]:
        """(type, schema version, body bytes) of an event."""
        name = self._tags[type(event)]
        body = self._encoder.encode(event)
        return name, self.versions[name], body

    def decode(self, event_type: str, schema: int, body: bytes) -> AnyBrokerEvent:
        """The current-schema event for a stored row."""
        current = self.versions.get(event_type)
        if current is None:
            raise EventDecodeError(f"unknown event type {event_type!r}")
        try:
            if schema == current:
                decoded: AnyBrokerEvent = self._decoders[event_type].decode(body)
                return decoded
            if schema > current:
                raise EventDecodeError(f"{event_type} schema {schema} is newer than {current}")
            data = msgspec.msgpack.decode(body)
            if not isinstance(data, dict):
                raise EventDecodeError(f"{event_type} body is not a map")
            for version in range(schema, current):
                upcaster = self.upcasters.get((event_type, version))
                if upcaster is None:
                    raise EventDecodeError(f"no upcaster for {event_type} v{version}")
                data = upcaster(data)
            converted: AnyBrokerEvent = msgspec.convert(data, EVENT_CLASSES[event_type])
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise EventDecodeError(f"{event_type} v{schema}: {exc}") from exc
        return converted


DEFAULT_CODEC: Final = EventCodec()
