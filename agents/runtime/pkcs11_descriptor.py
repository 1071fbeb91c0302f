"""The key descriptor: the small JSON file that says which token holds an agent's keys.

It stands where a file key store keeps its seeds, and holds no secret the token does not
guard: the public keys (so they can be shown without the PIN, and the token checked
against them on opening) and, in ``sealed`` agreement mode, the X25519 scalar encrypted
under a key only the token can derive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import msgspec

from agents.runtime.key_errors import KeyFileError
from protocol.crypto import KEY_SIZE

BACKEND: Final = "pkcs11"

AgreementMode = Literal["token", "sealed"]


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """Where the keys go: the module (a shared library), the token and the keys' label."""

    module: str
    token_label: str
    key_label: str
    pin_file: Path | None = None
    secret_label: str | None = None
    """The generic secret's label when it is not ``KEY_LABEL-secret``: successor keys made
    by a rotation keep their predecessor's, so what it derives stays the same."""


class Descriptor(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """The descriptor file's fields, as written; keys are hex."""

    backend: Literal["pkcs11"]
    module: str
    token_label: str
    key_label: str
    agreement: AgreementMode
    sign_key: str
    agree_key: str
    sealed_agree_seed: str | None = None
    pin_file: str | None = None
    secret_label: str | None = None

    @property
    def spec(self) -> TokenSpec:
        """The token and labels this descriptor points at."""
        pin_file = None if self.pin_file is None else Path(self.pin_file)
        return TokenSpec(self.module, self.token_label, self.key_label, pin_file, self.secret_label)

    @property
    def public_keys(self) -> tuple[bytes, bytes]:
        """The raw signing and agreement public keys recorded at creation."""
        return bytes.fromhex(self.sign_key), bytes.fromhex(self.agree_key)


def parse_descriptor(path: Path, raw: bytes) -> Descriptor:
    """Decode and check a descriptor read from ``path``."""
    try:
        descriptor = msgspec.json.decode(raw, type=Descriptor)
        sign_key, agree_key = descriptor.public_keys
        sealed = descriptor.sealed_agree_seed
        if sealed is not None:
            bytes.fromhex(sealed)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise KeyFileError(f"{path} is not a micropay key descriptor: {exc}") from exc
    if len(sign_key) != KEY_SIZE or len(agree_key) != KEY_SIZE:
        raise KeyFileError(f"{path} is not a micropay key descriptor: public keys are 32 bytes")
    if (descriptor.agreement == "sealed") != (sealed is not None):
        raise KeyFileError(
            f"{path}: sealed_agree_seed goes with agreement 'sealed', and only with it"
        )
    return descriptor


def reserve_descriptor(path: Path) -> int:
    """Create the descriptor file empty, 0600, failing if it exists: before touching the token."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; refusing to overwrite keys") from exc


def write_descriptor(handle: int, descriptor: Descriptor) -> None:
    """Fill the reserved file and close it."""
    with os.fdopen(handle, "wb") as stream:
        stream.write(msgspec.json.format(msgspec.json.encode(descriptor), indent=2) + b"\n")
        stream.flush()
        os.fsync(stream.fileno())
