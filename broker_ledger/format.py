"""What the ledger's tamper evidence is computed over, byte for byte.

Each event's link hash covers the previous event's hash and every stored column of its
own row, so editing, deleting, reordering or truncating anything breaks the chain from
that point on. A signed checkpoint pins (sequence, head hash) to the broker's key.

    link(seq) = SHA-256(TAG_LINK || link(seq-1) || u64(seq) || lp16(stream) || u64(version)
                        || lp16(type) || u32(schema) || u64(at) || u32(len(body)) || body)
    link(0)   = 32 zero bytes
    checkpoint signature = Ed25519(TAG_CHECKPOINT || lp16(broker id) || u64(seq) || link(seq))

(u64/u32: big-endian unsigned; lp16: 2-byte big-endian length, then UTF-8 bytes.)
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from protocol.ledger_heads import TAG_CHECKPOINT, checkpoint_message

TAG_LINK: Final = b"micropay/v1/ledger-link\x00"
GENESIS: Final = bytes(32)
_U64 = struct.Struct(">Q").pack
_U16 = struct.Struct(">H").pack
_TAIL = struct.Struct(">IQI").pack  # schema, at, body length
__all__ = ["GENESIS", "TAG_CHECKPOINT", "TAG_LINK", "checkpoint_message", "link_hash"]


def link_hash(  # noqa: PLR0913 - one argument per hashed column
    previous: bytes,
    seq: int,
    stream: str,
    version: int,
    event_type: str,
    schema: int,
    at: int,
    body: bytes,
) -> bytes:
    """The hash that chains one event to everything before it."""
    name, kind = stream.encode(), event_type.encode()
    return hashlib.sha256(
        b"".join(
            (
                TAG_LINK,
                previous,
                _U64(seq),
                _U16(len(name)),
                name,
                _U64(version),
                _U16(len(kind)),
                kind,
                _TAIL(schema, at, len(body)),
                body,
            )
        )
    ).digest()
