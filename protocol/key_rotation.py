"""The broker's key rotation statement: its old signing key hands over to a new one.

Both keys sign the same bytes: the old key authorizes its successor (an agent pinned to
it can follow), the new key proves it is held and vouches for its predecessor (an
auditor given the new key can trust what the old one signed).

    old_signature = Ed25519_old(TAG_KEY_ROTATION || statement)
    new_signature = Ed25519_new(TAG_KEY_ROTATION || statement)
"""

from __future__ import annotations

from typing import Final

from protocol.codec import decode_key_rotation, decode_signed_rotation, encode
from protocol.crypto import AgentKeys, verify_signature
from protocol.errors import AuthenticationError, KeyRotationError, MalformedMessageError
from protocol.messages import KeyRotation, SignedRotation

TAG_KEY_ROTATION: Final = b"micropay/v1/key-rotation\x00"


def sign_rotation(old: AgentKeys, new: AgentKeys, statement: KeyRotation) -> SignedRotation:
    """Both keys sign the statement (the caller holds both, for the moment of rotating)."""
    if (old.sign_key, new.sign_key) != (statement.old_sign_key, statement.new_sign_key):
        raise ValueError("the statement names other keys than the ones signing it")
    body = encode(statement)
    return SignedRotation(body, old.sign(TAG_KEY_ROTATION, body), new.sign(TAG_KEY_ROTATION, body))


def open_rotation(signed: SignedRotation, broker_id: str, in_force: bytes) -> KeyRotation:
    """The statement, once both signatures check and it succeeds ``in_force``.

    Raises ``KeyRotationError`` saying which rule it breaks.
    """
    try:
        statement = decode_key_rotation(signed.statement)
    except MalformedMessageError as exc:
        raise KeyRotationError(f"rotation statement does not decode: {exc}") from exc
    number = statement.sequence
    if statement.broker != broker_id:
        raise KeyRotationError(f"rotation {number} is {statement.broker!r}'s, not {broker_id!r}")
    if statement.old_sign_key != in_force:
        raise KeyRotationError(f"rotation {number} does not retire the key in force")
    if statement.new_sign_key == statement.old_sign_key:
        raise KeyRotationError(f"rotation {number} keeps the same key")
    for key, signature, which in (
        (statement.old_sign_key, signed.old_signature, "the key in force"),
        (statement.new_sign_key, signed.new_signature, "the new key"),
    ):
        try:
            verify_signature(key, TAG_KEY_ROTATION, signed.statement, signature)
        except AuthenticationError as exc:
            raise KeyRotationError(f"rotation {number} is not signed by {which}") from exc
    return statement


def rotation_bytes(signed: SignedRotation) -> bytes:
    """The MessagePack bytes of a signed rotation (what the ledger event keeps)."""
    return encode(signed)


def rotation_from_bytes(data: bytes) -> SignedRotation:
    """A signed rotation from its bytes (signatures not yet checked)."""
    return decode_signed_rotation(data)
