"""A fresh SoftHSM2 token in a temporary directory, for tests and benchmarks.

SoftHSM2 reads ``SOFTHSM2_CONF`` when the module is initialised, so each token gets its
own configuration file and token directory, and the process's sessions are closed (the
module finalised) before and after, so the next initialisation sees the next token.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agents.runtime.keys_pkcs11 import TokenSpec
from agents.runtime.pkcs11_pin import PIN_ENV, PIN_FILE_ENV
from agents.runtime.pkcs11_session import close_sessions

SOFTHSM_MODULE: Final = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL: Final = "micropay-test"  # noqa: S105 - a label, not a secret
USER_PIN: Final = "4711-user"
SO_PIN: Final = "4711-officer"


@dataclass(frozen=True)
class SoftToken:
    """An initialised token: where it lives and what unlocks it."""

    directory: Path
    conf: Path
    label: str = TOKEN_LABEL
    pin: str = USER_PIN
    module: str = SOFTHSM_MODULE

    def spec(self, key_label: str, pin_file: Path | None = None) -> TokenSpec:
        """Where an agent's keys go on this token."""
        return TokenSpec(self.module, self.label, key_label, pin_file)


def softhsm2_util() -> str:
    """The token tool, which ``make setup`` installs with the ``softhsm2`` package."""
    found = shutil.which("softhsm2-util")
    if found is None:
        msg = "softhsm2-util is missing: run `make setup` (it installs softhsm2)"
        raise RuntimeError(msg)
    return found


@contextmanager
def soft_token(directory: Path, label: str = TOKEN_LABEL) -> Iterator[SoftToken]:
    """Initialise a token under ``directory``; ``SOFTHSM2_CONF`` points at it meanwhile.

    The user PIN is put in ``MICROPAY_PKCS11_PIN`` (the PIN file variable removed), as an
    agent would find it; tests about PIN sources change that themselves.
    """
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, mode=0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    saved = {name: os.environ.get(name) for name in ("SOFTHSM2_CONF", PIN_ENV, PIN_FILE_ENV)}
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ[PIN_ENV] = USER_PIN
    os.environ.pop(PIN_FILE_ENV, None)
    close_sessions()
    try:
        subprocess.run(  # noqa: S603 - fixed arguments, the tool found on PATH
            [
                softhsm2_util(),
                *("--init-token", "--free", "--label", label),
                *("--so-pin", SO_PIN, "--pin", USER_PIN),
            ],
            check=True,
            capture_output=True,
            env=os.environ,
        )
        yield SoftToken(tokens, conf, label)
    finally:
        close_sessions()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
