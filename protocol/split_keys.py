"""A broker's keys after a signing-key rotation: sign with the new key, agree with the first.

Only the Ed25519 key rotates. The X25519 key and the secret the enrollment tokens come
from stay with the broker's first key: every agent's pair key, and every token handed
out and not yet used, stays good across a rotation (docs/PROTOCOL.md 11.11).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.crypto import AgentKeys


@dataclass(frozen=True, slots=True)
class SplitKeys:
    """``AgentKeys`` whose signing half is ``signer`` and whose agreement half is ``anchor``."""

    signer: AgentKeys
    anchor: AgentKeys

    @property
    def sign_key(self) -> bytes:
        """The signing key in force."""
        return self.signer.sign_key

    @property
    def agree_key(self) -> bytes:
        """The first key's agreement key, which never rotates."""
        return self.anchor.agree_key

    def sign(self, tag: bytes, data: bytes) -> bytes:
        """Signed by the key in force."""
        return self.signer.sign(tag, data)

    def shared_secret(self, peer_agree_key: bytes) -> bytes:
        """X25519 with the first key's agreement key."""
        return self.anchor.shared_secret(peer_agree_key)

    def derive_secret(self, info: bytes) -> bytes:
        """Derived in the first key's store, so the enrollment tokens stay the same."""
        return self.anchor.derive_secret(info)
