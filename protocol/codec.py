"""MessagePack encoding and typed, bounded decoding.

Decoding never returns an unvalidated object: bytes either become the struct the caller
asked for or raise ``MalformedMessageError``. Nothing else escapes.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

from protocol.errors import MalformedMessageError
from protocol.messages import (
    MESSAGE_TYPES,
    TYPE_NAMES,
    AllowanceGrant,
    Body,
    BrokerIdentity,
    Certificate,
    Commit,
    Commitment,
    Deposit,
    Deposited,
    KeyRotation,
    Offer,
    Scrip,
    Signed,
    SignedRotation,
    TaggedScrip,
)

T = TypeVar("T")
B = TypeVar("B", bound=Body)

_encoder: Final = msgspec.msgpack.Encoder()
_signed_decoder: Final = msgspec.msgpack.Decoder(Signed)
_certificate_decoder: Final = msgspec.msgpack.Decoder(Certificate)
_commitment_decoder: Final = msgspec.msgpack.Decoder(Commitment)
_allowance_grant_decoder: Final = msgspec.msgpack.Decoder(AllowanceGrant)
_rotation_decoder: Final = msgspec.msgpack.Decoder(KeyRotation)
_signed_rotation_decoder: Final = msgspec.msgpack.Decoder(SignedRotation)
_scrip_decoder: Final = msgspec.msgpack.Decoder(Scrip)
_tagged_scrip_decoder: Final = msgspec.msgpack.Decoder(TaggedScrip)
_rotations_decoder: Final = msgspec.msgpack.Decoder(list[SignedRotation])
_body_decoders: Final[dict[str, msgspec.msgpack.Decoder[Body]]] = {
    name: msgspec.msgpack.Decoder(cls) for name, cls in MESSAGE_TYPES.items()
}
# Any: each decoder decodes exactly its key's class, which ``decode_as`` types for its caller.
_decoders_by_class: Final[dict[type, tuple[str, msgspec.msgpack.Decoder[Any]]]] = {
    MESSAGE_TYPES[name]: (name, decoder) for name, decoder in _body_decoders.items()
}


_TRIMMED: Final[dict[type, int]] = {
    Certificate: 10,
    BrokerIdentity: 3,
    Offer: 8,
    Commit: 1,
    Deposit: 4,
    Deposited: 6,
}
"""Structs whose appended fields are left out while they hold their defaults (empty).

A certificate from the broker's first key, the identity of a broker that never rotated
its key, an offer without scrip or allowance, a commit without a grant, an off-line
``deposit`` (no claim) and a ``deposited`` that is no repeat are then byte for byte what
they were before those fields existed.
"""


def encode(value: msgspec.Struct) -> bytes:
    """MessagePack bytes of a wire struct (msgspec's encoding is deterministic)."""
    keep = _TRIMMED.get(type(value))
    if keep is not None:
        fields = msgspec.structs.astuple(value)
        if not any(fields[keep:]):
            return _encoder.encode(fields[:keep])
    return _encoder.encode(value)


def type_name(body: Body) -> str:
    """The envelope ``type`` string for a body."""
    return TYPE_NAMES[type(body)]


def _decode(decoder: msgspec.msgpack.Decoder[T], data: bytes, what: str) -> T:
    """The one place decode errors (including invalid UTF-8) become a protocol error."""
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise MalformedMessageError(f"{what}: {exc}") from exc


def decode_body(message_type: str, data: bytes) -> Body:
    """Decode a message body with the schema its envelope type names."""
    decoder = _body_decoders.get(message_type)
    if decoder is None:
        raise MalformedMessageError(f"unknown message type {message_type!r}")
    return _decode(decoder, data, message_type)


def decode_as(cls: type[B], data: bytes) -> B:
    """Decode a body the caller already knows the type of (an offer, a first commit)."""
    name, decoder = _decoders_by_class[cls]
    typed: msgspec.msgpack.Decoder[B] = decoder
    return _decode(typed, data, name)


def decode_signed(data: bytes) -> Signed:
    """Decode a ``Signed`` wrapper (signature not yet checked)."""
    return _decode(_signed_decoder, data, "signed object")


def decode_certificate(data: bytes) -> Certificate:
    """Decode certificate bytes (from inside a verified ``Signed``)."""
    return _decode(_certificate_decoder, data, "certificate")


def decode_commitment(data: bytes) -> Commitment:
    """Decode commitment bytes (from inside a verified ``Signed``)."""
    return _decode(_commitment_decoder, data, "commitment")


def decode_allowance_grant(data: bytes) -> AllowanceGrant:
    """Decode allowance grant bytes (from inside a ``Signed``)."""
    return _decode(_allowance_grant_decoder, data, "allowance grant")


def decode_tagged_scrip(data: bytes) -> TaggedScrip:
    """Decode a ``TaggedScrip`` wrapper (tag not yet checked)."""
    return _decode(_tagged_scrip_decoder, data, "tagged scrip")


def decode_scrip(data: bytes) -> Scrip:
    """Decode scrip bytes (from inside a ``TaggedScrip``)."""
    return _decode(_scrip_decoder, data, "scrip")


def decode_key_rotation(data: bytes) -> KeyRotation:
    """Decode a key rotation statement (signatures not yet checked)."""
    return _decode(_rotation_decoder, data, "key rotation")


def decode_signed_rotation(data: bytes) -> SignedRotation:
    """Decode a signed key rotation (signatures not yet checked)."""
    return _decode(_signed_rotation_decoder, data, "signed key rotation")


def encode_rotations(rotations: list[SignedRotation]) -> bytes:
    """A list of signed rotations, as an agent keeps its broker's key history."""
    return _encoder.encode(rotations)


def decode_rotations(data: bytes) -> list[SignedRotation]:
    """A kept key history (signatures not yet checked)."""
    return _decode(_rotations_decoder, data, "key history")
