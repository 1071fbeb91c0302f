"""An agent's private keys on disk.

The file holds the two 32-byte private seeds (Ed25519, X25519) as hex, created with mode
0600 and refused if anyone else can read it. This is the software fallback; on platforms
with a tamper-resistant store (a TPM, a secure element, a PKCS#11 token) the same two
operations, sign and agree, belong there instead.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from agents.runtime.private_files import make_private_dir
from protocol.crypto import Identity


class KeyFileError(Exception):
    """The key file is missing, malformed or readable by others."""


def create_identity(path: Path) -> Identity:
    """Generate keys and write them to a new file only the owner can read."""
    identity = Identity.generate()
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


def load_identity(path: Path) -> Identity:
    """Read keys written by ``create_identity``."""
    try:
        mode = path.stat().st_mode
        raw = json.loads(path.read_text())
        secret = raw.get("secret_seed")
        identity = Identity.from_seeds(
            bytes.fromhex(raw["sign_seed"]),
            bytes.fromhex(raw["agree_seed"]),
            None if secret is None else bytes.fromhex(secret),
        )
    except FileNotFoundError as exc:
        raise KeyFileError(f"no key file at {path}") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"{path} is not a micropay key file: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by others; chmod 600 it")
    return identity
