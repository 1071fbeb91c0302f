"""An agent starts only on its own store: the one whose certificate names its keys.

A store copied beside other keys (or keys replaced under a store) would otherwise fail
later and obscurely: a certificate refused, MACs no peer accepts, seeds that do not
unseal. Checking the public keys the stored certificate names says so at once, before
anything is written.
"""

from __future__ import annotations

from pathlib import Path

from agents.runtime.keystore import KeyFileError
from protocol.codec import decode_certificate, decode_signed
from protocol.crypto import AgentKeys
from protocol.errors import MalformedMessageError


class ForeignStoreError(KeyFileError):
    """The data directory's store belongs to other keys than those loaded."""


def check_owner(certificate: bytes | None, keys: AgentKeys, directory: Path) -> None:
    """Refuse a store whose certificate was issued for other public keys than ``keys``'.

    A store with no certificate yet (not enrolled) belongs to whoever enrolls it; one
    whose certificate does not decode is left to the full check at restore.
    """
    if certificate is None:
        return
    try:
        certified = decode_certificate(decode_signed(certificate).body)
    except MalformedMessageError:
        return
    if (certified.sign_key, certified.agree_key) == (keys.sign_key, keys.agree_key):
        return
    msg = (
        f"{directory} holds the store of other keys: its certificate (serial"
        f" {certified.serial}, {certified.subject!r}) names signing key"
        f" {certified.sign_key.hex()[:16]}…, and this key store holds"
        f" {keys.sign_key.hex()[:16]}…; refusing to start. Start with the key store this"
        " directory was created with, or use another data directory."
    )
    raise ForeignStoreError(msg)
