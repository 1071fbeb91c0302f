"""Build the Mosquitto plugin that refuses retained messages outside ``micropay/v1/pub/+/+``.

Mosquitto's ``acl_file`` cannot tell a retained publish from a normal one, so every user
could retain messages on any topic it may write, e.g. thousands of
``micropay/v1/in/<made-up name>/<itself>``, each kept in the broker's memory (and its
persistence file) for good. The protocol retains only ``micropay/v1/pub/<sender>/<kind>``.
``contrib/mosquitto/micropay_retain_guard.c`` is a small Mosquitto 2.0 plugin that refuses
every other retained publish (and retained Will) before the ``acl_file`` is consulted;
everything else it leaves to the ``acl_file``. Load it with ``plugin PATH`` in
``mosquitto.conf``.

This module compiles it with the system C compiler, once: the shared object is rebuilt
only when it is missing or older than its source. It is written under a temporary name
and renamed into place, so a concurrent build or a starting Mosquitto never sees half a
file. The headers come from Debian's ``mosquitto-dev`` (``mosquitto_broker.h``,
``mosquitto_plugin.h``) and ``libmosquitto-dev`` (``mosquitto.h``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from agents.ops.shipped_files import build_dir, shipped

SOURCE: Final = shipped("contrib/mosquitto/micropay_retain_guard.c")
BUILD_DIR: Final = build_dir("mosquitto")
LIBRARY_NAME: Final = "micropay_retain_guard.so"
INSTALL_HINT: Final = "apt-get install gcc mosquitto-dev libmosquitto-dev"
CFLAGS: Final = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared")


class RetainGuardError(Exception):
    """The plugin cannot be built; the one-line message says what to install or fix."""


def plugin_path(out_dir: Path | None = None) -> Path:
    """Where ``build`` puts the shared object (it may not exist yet)."""
    return (out_dir or BUILD_DIR) / LIBRARY_NAME


def build(out_dir: Path | None = None) -> Path:
    """Compile the plugin into ``out_dir`` (default ``build/mosquitto/``) unless up to date.

    Returns the path of the shared object, for a ``plugin`` line of mosquitto.conf.

    Raises:
        RetainGuardError: no C compiler, no Mosquitto headers, or the compiler failed.
    """
    target = plugin_path(out_dir)
    if _up_to_date(target):
        return target
    compiler = shutil.which("cc")
    if compiler is None:
        raise RetainGuardError(f"no C compiler (cc) to build the retain guard: {INSTALL_HINT}")
    _make_dirs(target.parent)
    flags = [*CFLAGS, "-undefined", "dynamic_lookup"] if sys.platform == "darwin" else CFLAGS
    # A name of our own in the same directory: os.replace is then an atomic rename.
    handle, temporary = tempfile.mkstemp(prefix=f".{LIBRARY_NAME}.", dir=target.parent)
    os.close(handle)
    try:
        done = subprocess.run(  # noqa: S603 - the compiler found above, fixed arguments
            [compiler, *flags, str(SOURCE), "-o", temporary],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RetainGuardError(_compile_error(done.stderr))
        Path(temporary).chmod(0o755)  # mkstemp made it 0600; Mosquitto only needs to read
        Path(temporary).replace(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            Path(temporary).unlink()
    return target


def _up_to_date(target: Path) -> bool:
    """Whether ``target`` exists and is at least as new as the C source."""
    try:
        return target.stat().st_mtime_ns >= SOURCE.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each 0700 (existing ones are kept)."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent build made it first
            path.mkdir(mode=0o700)


def _compile_error(stderr: str) -> str:
    """One line saying why the compiler failed, and what to install if headers are missing."""
    if "mosquitto" in stderr and ("No such file" in stderr or "file not found" in stderr):
        return f"Mosquitto plugin headers are missing: {INSTALL_HINT}"
    errors = [line for line in stderr.splitlines() if "error" in line]
    first = (errors or stderr.splitlines() or ["no output"])[0].strip()
    return f"compiling {SOURCE.name} failed: {first}"
