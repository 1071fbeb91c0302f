"""The envelope every message travels in, and the order in which it is checked.

Wire layout: ``auth (1 byte) || header (MessagePack array) || trailer``. The trailer is a
32-byte HMAC-SHA256 tag, or a 64-byte Ed25519 signature when ``auth`` is ``SIGNED``.
The MAC and the signature cover the MQTT topic (length-prefixed) and every byte before
the trailer, exactly as received.

Receiving is: size check, split the trailer, decode the header with a strict typed
decoder (only to pick the key), verify the MAC or signature, then check recipient,
version, clock skew and replay window, and only then decode the body.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec

from protocol.codec import decode_body, encode, type_name
from protocol.crypto import MAC_SIZE, SIGNATURE_SIZE, TAG_ENVELOPE, AgentKeys, MacKey
from protocol.crypto import verify_signature as _verify_signature
from protocol.errors import (
    AuthenticationError,
    MalformedMessageError,
    MessageTooLargeError,
    ReplayError,
    StaleMessageError,
)
from protocol.messages import Body, Corr, Id, Millis

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024
DEFAULT_MAX_SKEW: Final = 120.0
REPLAY_WINDOW: Final = 1024
_WINDOW_MASK: Final = (1 << REPLAY_WINDOW) - 1  # built once, not a 1024-bit int per message
BROADCAST: Final = "*"


class Auth(enum.IntEnum):
    """How an envelope is authenticated; the first byte on the wire."""

    PAIR = 0
    """HMAC under the static agent-broker key."""
    TOKEN = 1
    """HMAC under the key of a one-time enrollment token."""
    CHAIN = 2
    """HMAC under the buyer-vendor key of the commitment named in ``ref``."""
    SIGNED = 3
    """Ed25519 signature by the sender, for retained messages read by many."""
    SCRIP = 4
    """HMAC under a buyer's customer secret at one vendor (docs/SCHEMES.md 3.4)."""


_AUTH_BY_BYTE: Final[dict[int, Auth]] = {auth.value: auth for auth in Auth}


class Header(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """The envelope's fields, in wire order."""

    version: int
    type: Annotated[str, msgspec.Meta(max_length=16)]
    sender: Id
    recipient: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    ref: Annotated[bytes, msgspec.Meta(max_length=32)]
    counter: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    timestamp: Millis
    corr: Corr
    body: bytes


_header_decoder: Final = msgspec.msgpack.Decoder(Header)


@dataclass(frozen=True, slots=True)
class Parsed:
    """An envelope split and its header decoded, not yet authenticated."""

    auth: Auth
    header: Header
    signed_part: bytes
    trailer: bytes


_prefixes: dict[str, bytes] = {}
_PREFIXES_KEPT: Final = 4096  # inbox topics are one per peer; a flood of others is not kept


def _topic_prefix(topic: str) -> bytes:
    prefix = _prefixes.get(topic)
    if prefix is None:
        raw = topic.encode()
        prefix = len(raw).to_bytes(2, "big") + raw
        if len(_prefixes) >= _PREFIXES_KEPT:
            _prefixes.clear()
        _prefixes[topic] = prefix
    return prefix


def seal(  # noqa: PLR0913 - one argument per header field
    topic: str,
    body: Body,
    *,
    auth: Auth,
    sender: str,
    recipient: str,
    counter: int,
    now: float,
    key: MacKey | None = None,
    signer: AgentKeys | None = None,
    ref: bytes = b"",
    corr: bytes = b"",
) -> bytes:
    """Build the wire bytes of one message."""
    header = Header(
        PROTOCOL_VERSION,
        type_name(body),
        sender,
        recipient,
        ref,
        counter,
        int(now * 1000),
        corr,
        encode(body),
    )
    signed_part = bytes([auth]) + encode(header)
    if auth is Auth.SIGNED:
        if signer is None:
            raise TypeError("a SIGNED envelope needs a signer")
        return signed_part + signer.sign(TAG_ENVELOPE, _topic_prefix(topic) + signed_part)
    if key is None:
        raise TypeError("a MAC'd envelope needs a key")
    return signed_part + key.tag(_topic_prefix(topic), signed_part)


def parse(payload: bytes, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Parsed:
    """Size check, split, strict header decode. Authenticates nothing yet."""
    if len(payload) > max_size:
        raise MessageTooLargeError(f"{len(payload)} bytes > limit {max_size}")
    if not payload:
        raise MalformedMessageError("empty payload")
    auth = _AUTH_BY_BYTE.get(payload[0])  # a dict: ``Auth(byte)`` costs a call per message
    if auth is None:
        raise MalformedMessageError(f"unknown auth byte {payload[0]}")
    trailer_size = SIGNATURE_SIZE if auth is Auth.SIGNED else MAC_SIZE
    if len(payload) < 1 + trailer_size + 1:
        raise MalformedMessageError("payload shorter than its trailer")
    signed_part = payload[:-trailer_size]
    try:
        header = _header_decoder.decode(signed_part[1:])
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedMessageError(f"envelope header: {exc}") from exc
    if header.version != PROTOCOL_VERSION:
        raise MalformedMessageError(f"protocol version {header.version} is not supported")
    return Parsed(auth, header, signed_part, payload[-trailer_size:])


def verify_mac(parsed: Parsed, topic: str, key: MacKey) -> None:
    """Check the HMAC over the topic and the exact received bytes."""
    key.verify(parsed.trailer, _topic_prefix(topic), parsed.signed_part)


def verify_signed(parsed: Parsed, topic: str, sign_key: bytes) -> None:
    """Check the sender's Ed25519 signature of a ``SIGNED`` envelope."""
    if parsed.auth is not Auth.SIGNED:
        raise AuthenticationError
    _verify_signature(
        sign_key, TAG_ENVELOPE, _topic_prefix(topic) + parsed.signed_part, parsed.trailer
    )


def open_body(parsed: Parsed) -> Body:
    """Decode the body; call only after the envelope is authenticated."""
    return decode_body(parsed.header.type, parsed.header.body)


class ReplayGuard:
    """Per-stream sliding windows over sender counters, plus the clock-skew check.

    A stream is (sender, auth, ref). Each keeps the highest counter seen and a bitmap of
    the ``REPLAY_WINDOW`` counters below it, like IPsec's anti-replay window, so modest
    reordering is accepted and any repeat is not. Streams idle for twice the skew are
    forgotten: every message they accepted is by then stale anyway.
    """

    def __init__(self, max_skew: float = DEFAULT_MAX_SKEW) -> None:
        self.max_skew = max_skew
        self._streams: dict[tuple[str, int, bytes], tuple[int, int, float]] = {}

    def check(self, parsed: Parsed, now: float) -> None:
        """Accept the envelope's counter once; raise ``ReplayError`` or ``StaleMessageError``."""
        header = parsed.header
        if abs(header.timestamp / 1000 - now) > self.max_skew:
            raise StaleMessageError(
                f"timestamp {header.timestamp} is {header.timestamp / 1000 - now:+.1f} s off"
            )
        key = (header.sender, int(parsed.auth), header.ref)
        counter = header.counter
        state = self._streams.get(key)
        if state is None:
            self._streams[key] = (counter, 1, now)
            return
        highest, bitmap, _ = state
        if counter > highest:
            shift = counter - highest
            bitmap = ((bitmap << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW else 1
            self._streams[key] = (counter, bitmap, now)
            return
        offset = highest - counter
        if offset >= REPLAY_WINDOW or bitmap >> offset & 1:
            raise ReplayError(f"counter {counter} already seen from {header.sender}")
        self._streams[key] = (highest, bitmap | 1 << offset, now)

    def prune(self, now: float) -> None:
        """Forget streams idle for more than twice the skew."""
        horizon = now - 2 * self.max_skew
        for key in [k for k, (_, _, seen) in self._streams.items() if seen < horizon]:
            del self._streams[key]

    def __len__(self) -> int:
        return len(self._streams)


CounterSource = Callable[[float], int]
"""Where each stream's first counter comes from, given ``now`` (s): see ``Counter``."""


def clock_counter(now: float) -> int:
    """The sender's clock in microseconds: rises across restarts with nothing stored."""
    return int(now * 1_000_000)


class Counter:
    """A sender's per-stream counters: consecutive, each stream starting from ``source``.

    Consecutive values keep the receiver's window dense (reordering tolerance is counted in
    messages, not microseconds). The default source, the clock in µs, keeps counters rising
    across restarts without storing them, as long as the sender's clock does not run
    backwards and a stream averages fewer than a million messages a second. A device
    without a real-time clock uses a persisted boot epoch instead (``boot_counter``).
    """

    def __init__(self, source: CounterSource = clock_counter) -> None:
        self._source = source
        self._last: dict[tuple[str, int, bytes], int] = {}

    def next(self, recipient: str, auth: Auth, ref: bytes, now: float) -> int:
        """The counter for the next envelope to ``recipient`` on this stream."""
        key = (recipient, int(auth), ref)
        last = self._last.get(key)
        value = self._source(now) if last is None else last + 1
        self._last[key] = value
        return value
