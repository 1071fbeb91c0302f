"""The PIN that unlocks a PKCS#11 token: from the environment or a private file, never argv.

Every local user can read every process's command line, so the PIN comes from
``MICROPAY_PKCS11_PIN``, else from the file named by ``MICROPAY_PKCS11_PIN_FILE``, else from
the file the key descriptor names (``pin_file``). A PIN file must belong to this user and be
closed to group and others, as key files are; its trailing newline is not part of the PIN.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from agents.runtime.key_errors import TokenError
from agents.runtime.private_files import PermissionsError, check_private_file

PIN_ENV: Final = "MICROPAY_PKCS11_PIN"
PIN_FILE_ENV: Final = "MICROPAY_PKCS11_PIN_FILE"


def token_pin(pin_file: Path | None, token_label: str) -> str:
    """The user PIN for ``token_label``, from the first source that is set."""
    if pin := os.environ.get(PIN_ENV):
        return pin
    if named := os.environ.get(PIN_FILE_ENV):
        return read_pin_file(Path(named))
    if pin_file is not None:
        return read_pin_file(pin_file)
    raise TokenError(
        f"no PIN for token {token_label}: set {PIN_ENV}, or {PIN_FILE_ENV} to a 0600 file "
        "holding it, or pin_file in the key descriptor"
    )


def read_pin_file(path: Path) -> str:
    """The PIN in a file only its owner can read, without the line ending."""
    try:
        if not path.is_file():
            raise TokenError(f"no PIN file at {path}")
        check_private_file(path)
        text = path.read_text(encoding="utf-8")
    except PermissionsError as exc:
        raise TokenError(f"refusing the PIN file: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read the PIN file {path}: {exc}") from exc
    pin = text.removesuffix("\n").removesuffix("\r")
    if not pin or "\n" in pin:
        raise TokenError(f"{path} must hold the PIN on one line")
    return pin
