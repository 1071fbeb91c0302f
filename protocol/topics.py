"""The MQTT topic scheme, shaped so Mosquitto ACL patterns can confine every client.

- ``micropay/v1/in/<recipient>/<sender>``: point-to-point. A client may publish only where
  ``<sender>`` is its own username and subscribe only to ``micropay/v1/in/<itself>/#``.
- ``micropay/v1/pub/<sender>/<kind>``: retained, signed broadcasts (broker identity,
  revocation list, vendor offers). Only ``<sender>`` may publish; everybody may read.
"""

from __future__ import annotations

from typing import Final, Literal

PREFIX: Final = "micropay/v1"
PublicKind = Literal["identity", "revocations", "offer", "ledger-head"]


def inbox(recipient: str, sender: str) -> str:
    """The topic a sender publishes to for one recipient."""
    return f"{PREFIX}/in/{recipient}/{sender}"


def inbox_filter(owner: str) -> str:
    """The subscription that reads everything addressed to ``owner``."""
    return f"{PREFIX}/in/{owner}/+"


def public(sender: str, kind: PublicKind) -> str:
    """A retained broadcast topic."""
    return f"{PREFIX}/pub/{sender}/{kind}"


def public_filter(kind: PublicKind) -> str:
    """The subscription that reads one kind of broadcast from everybody."""
    return f"{PREFIX}/pub/+/{kind}"


def split(topic: str) -> tuple[str, str, str] | None:
    """``("in", recipient, sender)`` or ``("pub", sender, kind)``, or ``None`` if foreign."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[2] not in ("in", "pub"):
        return None
    return parts[2], parts[3], parts[4]


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching with ``+`` and ``#`` wildcards."""
    filter_parts = topic_filter.split("/")
    topic_parts = topic.split("/")
    for position, part in enumerate(filter_parts):
        if part == "#":
            return True
        if position >= len(topic_parts) or part not in ("+", topic_parts[position]):
            return False
    return len(filter_parts) == len(topic_parts)
