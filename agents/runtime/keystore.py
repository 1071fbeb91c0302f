"""An agent's private keys on disk, or the descriptor of the token that holds them.

The file backend keeps the private seeds (Ed25519, X25519, the secret seed) as hex in a
file created 0600 and refused if anyone else can read it. A file whose ``backend`` is
``pkcs11`` is instead a key descriptor (``keys_pkcs11``): the keys are in a PKCS#11 token
that signs, agrees and derives without handing them out. Either way the file is private,
and ``load_identity`` gives the same ``AgentKeys``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from agents.runtime.key_errors import KeyFileError, TokenError
from agents.runtime.keys_pkcs11 import create_token_keys, open_token_keys
from agents.runtime.pkcs11_descriptor import BACKEND, TokenSpec, parse_descriptor
from agents.runtime.private_files import make_private_dir
from protocol.crypto import AgentKeys, Identity

__all__ = [
    "KeyFileError",
    "TokenError",
    "create_identity",
    "create_successor",
    "describe_keys",
    "load_identity",
]


def create_identity(path: Path, *, secret_seed: bytes | None = None) -> Identity:
    """Generate keys and write them to a new file only the owner can read.

    ``secret_seed``: keep a predecessor's (``create_successor``) instead of a new one.
    """
    identity = Identity.generate()
    if secret_seed is not None:
        identity = Identity(identity.signing, identity.agreement, secret_seed)
    make_private_dir(path.parent)
    data = json.dumps(
        {
            "sign_seed": identity.sign_seed.hex(),
            "agree_seed": identity.agree_seed.hex(),
            "secret_seed": (identity.secret_seed or b"").hex(),
        }
    )
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists; refusing to overwrite keys") from exc
    with os.fdopen(descriptor, "w") as handle:
        handle.write(data + "\n")
    return identity


def load_identity(path: Path) -> AgentKeys:
    """Open the keys at ``path``: a key file, or a token through its descriptor."""
    raw, fields = _read(path)
    if fields.get("backend") == BACKEND:
        return open_token_keys(path, parse_descriptor(path, raw))
    return _file_identity(path, fields)


def create_successor(current: Path, path: Path) -> AgentKeys:
    """New signing and agreement keys at ``path``, in the same store as those at ``current``.

    What ``derive_secret`` gives stays the same (docs/PROTOCOL.md 11.12): the successor keeps
    the secret seed of a file (an older file's signing seed, which served as one), or the
    generic secret in the token, so seeds sealed before a rotation still open after it. In a
    token the new keys are labelled ``LABEL.2``, then ``LABEL.3`` and so on.
    """
    raw, fields = _read(current)
    if fields.get("backend") != BACKEND:
        previous = _file_identity(current, fields)
        kept = previous.secret_seed if previous.secret_seed is not None else previous.sign_seed
        return create_identity(path, secret_seed=kept)
    descriptor = parse_descriptor(current, raw)
    spec = descriptor.spec
    secret_label = spec.secret_label or f"{spec.key_label}-secret"
    base, generation = spec.key_label, 2
    if spec.secret_label is not None:  # itself a successor: LABEL.N
        base, _, number = spec.key_label.rpartition(".")
        generation = int(number) + 1 if number.isdigit() else 2
    successor = TokenSpec(
        spec.module, spec.token_label, f"{base}.{generation}", spec.pin_file, secret_label
    )
    return create_token_keys(path, successor, agreement=descriptor.agreement)


def describe_keys(path: Path) -> dict[str, str]:
    """The public side of the keys at ``path``: no secret, and no PIN needed."""
    raw, fields = _read(path)
    if fields.get("backend") == BACKEND:
        descriptor = parse_descriptor(path, raw)
        return {
            "backend": BACKEND,
            "sign_key": descriptor.sign_key,
            "agree_key": descriptor.agree_key,
            "module": descriptor.module,
            "token_label": descriptor.token_label,
            "key_label": descriptor.key_label,
            "agreement": descriptor.agreement,
        }
    identity = _file_identity(path, fields)
    return {
        "backend": "file",
        "sign_key": identity.sign_key.hex(),
        "agree_key": identity.agree_key.hex(),
    }


def _read(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The file's bytes and JSON object, refused if others can reach it."""
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
        fields = json.loads(raw)
    except FileNotFoundError as exc:
        raise KeyFileError(f"no key file at {path}") from exc
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"{path} is not a micropay key file: {exc}") from exc
    if not isinstance(fields, dict):
        raise KeyFileError(f"{path} is not a micropay key file: not a JSON object")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others; chmod 600 it")
    return raw, fields


def _file_identity(path: Path, fields: dict[str, Any]) -> Identity:
    try:
        secret = fields.get("secret_seed")
        return Identity.from_seeds(
            bytes.fromhex(fields["sign_seed"]),
            bytes.fromhex(fields["agree_seed"]),
            None if secret is None else bytes.fromhex(secret),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a micropay key file: {exc}") from exc
