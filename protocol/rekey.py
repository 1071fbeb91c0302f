"""An agent's request to certify new keys, on the authority of the certificate it replaces.

The new signing key proves possession, as at enrollment; the old one authorizes the
change. Both sign the same data under different tags, so neither signature can stand
in for the other:

    data          = lp(account) || lp(broker id) || u64(serial) || new sign_key || new agree_key
    proof         = Ed25519_new(TAG_REKEY_PROOF || data)
    authorization = Ed25519_old(TAG_REKEY || data)
"""

from __future__ import annotations

from typing import Final

from protocol.crypto import AgentKeys, length_prefixed, verify_signature
from protocol.errors import AuthenticationError, RekeyError
from protocol.messages import RekeyRequest

TAG_REKEY: Final = b"micropay/v1/rekey\x00"
TAG_REKEY_PROOF: Final = b"micropay/v1/rekey-proof\x00"


def rekey_data(account: str, broker: str, serial: int, sign_key: bytes, agree_key: bytes) -> bytes:
    """What the proof and the authorization sign (after their tags)."""
    return (
        length_prefixed(account)
        + length_prefixed(broker)
        + serial.to_bytes(8, "big")
        + sign_key
        + agree_key
    )


def rekey_request(
    account: str, broker: str, serial: int, old: AgentKeys, new: AgentKeys
) -> RekeyRequest:
    """The request an agent holding certificate ``serial`` under ``old`` sends for ``new``."""
    data = rekey_data(account, broker, serial, new.sign_key, new.agree_key)
    return RekeyRequest(
        serial,
        new.sign_key,
        new.agree_key,
        new.sign(TAG_REKEY_PROOF, data),
        old.sign(TAG_REKEY, data),
    )


def check_rekey_request(
    request: RekeyRequest, account: str, broker: str, old_sign_key: bytes
) -> None:
    """Raise ``RekeyError`` unless both the new key's proof and the old key's authorization hold."""
    data = rekey_data(account, broker, request.serial, request.sign_key, request.agree_key)
    for key, tag, signature, what in (
        (request.sign_key, TAG_REKEY_PROOF, request.proof, "proof of possession"),
        (old_sign_key, TAG_REKEY, request.authorization, "old key's authorization"),
    ):
        try:
            verify_signature(key, tag, data, signature)
        except AuthenticationError as exc:
            raise RekeyError(f"the {what} does not verify") from exc
