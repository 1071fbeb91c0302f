"""SoftHSM2 tokens for the demo and the tests: a software PKCS#11 token in a directory.

``softhsm2-util`` takes PINs only as arguments (where every local user can read them in
the process list) or at its terminal prompt, so tokens are initialised through a
pseudo-terminal that answers the prompts. A real card or HSM is initialised with its
vendor's tool instead; micropay only needs its module path, token label and user PIN.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import time
from pathlib import Path
from typing import Final

from agents.runtime.private_files import make_private_dir, write_private

MODULE_CANDIDATES: Final = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
CONFIG_ENV: Final = "SOFTHSM2_CONF"
PROMPT_TIMEOUT: Final = 20.0


class SoftHsmError(Exception):
    """SoftHSM2 is missing or refused to create a token."""


def module_path() -> Path:
    """Where SoftHSM2's PKCS#11 library is installed."""
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise SoftHsmError("SoftHSM2 is not installed (apt-get install softhsm2)")


def write_config(directory: Path) -> Path:
    """A ``softhsm2.conf`` keeping its tokens under ``directory/tokens`` (all 0700/0600)."""
    directory = make_private_dir(directory).resolve()  # the config is read from anywhere
    tokens = make_private_dir(directory / "tokens")
    config = directory / "softhsm2.conf"
    write_private(
        config,
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
    )
    return config


def init_token(config: Path, label: str, so_pin: str, pin: str) -> None:
    """Initialise a free slot as token ``label``, answering the PIN prompts on a terminal."""
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise SoftHsmError("softhsm2-util is not installed (apt-get install softhsm2)")
    answers = [so_pin, so_pin, pin, pin]
    pid, terminal = pty.fork()
    if pid == 0:  # the child: exec the tool with only the label on its command line
        os.environ[CONFIG_ENV] = str(config)
        os.execv(tool, [tool, "--init-token", "--free", "--label", label])  # noqa: S606
    transcript, finished = _answer(terminal, answers)
    if not finished:  # it asked again (a PIN it refused) or went quiet: stop it
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    if not finished or os.waitstatus_to_exitcode(status) != 0 or answers:
        said = transcript.decode(errors="replace").strip().splitlines()
        raise SoftHsmError(f"softhsm2-util could not create token {label!r}: {said[-1:]}")


def _answer(terminal: int, answers: list[str]) -> tuple[bytes, bool]:
    """Type each answer at each ``PIN:`` prompt; the transcript, and whether the tool exited.

    A prompt with no answer left (it refused a PIN and asks again) or a silent tool past
    the timeout ends the conversation unfinished.
    """
    transcript = b""
    deadline = time.monotonic() + PROMPT_TIMEOUT
    while True:
        ready, _, _ = select.select([terminal], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return transcript, False
        try:
            chunk = os.read(terminal, 1024)
        except OSError:  # EIO: the tool exited and closed its terminal
            return transcript, True
        if not chunk:
            return transcript, True
        transcript += chunk
        if chunk.rstrip().endswith(b"PIN:"):
            if not answers:
                return transcript, False
            os.write(terminal, answers.pop(0).encode() + b"\n")
