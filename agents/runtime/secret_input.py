"""Secrets come from the environment or from a file only its owner can read, never argv.

Every local user can read every process's command line (``ps``, ``/proc/*/cmdline``), so
enrollment tokens and MQTT passwords are taken from ``MICROPAY_TOKEN`` /
``MICROPAY_MQTT_PASSWORD`` or from a 0600 file (``--token-file``, ``--mqtt-password-file``,
systemd's ``LoadCredential=``). A file that others can read is refused, as key files are.
"""

from __future__ import annotations

import os
from pathlib import Path

from agents.runtime.private_files import PermissionsError, check_private_file


class SecretInputError(Exception):
    """A secret file that is missing, empty, open to others, or not what it should hold."""


def read_secret_file(path: Path, what: str) -> str:
    """The first line of a private file holding one secret.

    A file in systemd's ``$CREDENTIALS_DIRECTORY`` is taken as it is: systemd alone makes
    it readable to the unit's user (by ownership or an ACL, depending on the version).
    """
    try:
        if not _systemd_credential(path):
            check_private_file(path)
        text = path.read_text().strip()
    except FileNotFoundError as exc:
        raise SecretInputError(f"no {what} file at {path}") from exc
    except PermissionsError as exc:
        raise SecretInputError(str(exc)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretInputError(f"cannot read the {what} file {path}: {exc}") from exc
    if not text or "\n" in text:
        raise SecretInputError(f"{path} must hold the {what} on one line")
    return text


def _systemd_credential(path: Path) -> bool:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return False
    return path.resolve().parent == Path(directory).resolve()


def secret(value: str | None, file: Path | None, what: str) -> str | None:
    """The secret from its file if one is named, else the value from the environment."""
    if file is not None:
        return read_secret_file(file, what)
    return value or None


def token_bytes(text: str | None, source: str) -> bytes | None:
    """An enrollment token given as hex."""
    if text is None:
        return None
    try:
        token = bytes.fromhex(text)
    except ValueError as exc:
        raise SecretInputError(f"the enrollment token from {source} is not hex") from exc
    if not token:
        raise SecretInputError(f"the enrollment token from {source} is empty")
    return token
