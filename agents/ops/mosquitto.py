"""Running Mosquitto for micropay: render its config into a data directory, manage users.

The project's ``mosquitto.conf`` and ``mosquitto.acl`` are the source; ``render`` rewrites
only the listener ports and the file locations, so the demo, the tests and a system
install all run the same settings. The TLS listener is kept only when TLS is asked for
(a port and a certificate directory from ``micropay mqtt certs``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from agents.ops.mosquitto_passwd import PasswordFileError, set_password
from agents.ops.retain_guard import LIBRARY_NAME, RetainGuardError
from agents.ops.retain_guard import build as build_retain_guard
from agents.ops.shipped_files import shipped
from agents.ops.tls_certs import CertFiles
from agents.runtime.private_files import (
    create_private_file,
    make_private_dir,
    open_private,
    write_private,
)

TEMPLATE = shipped("mosquitto.conf")
ACL_TEMPLATE = shipped("mosquitto.acl")


class MosquittoError(Exception):
    """Mosquitto is missing, failed to start, or refused a command."""


def binary(name: str = "mosquitto") -> str:
    """The path of a Mosquitto program (also looked for in /usr/sbin)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise MosquittoError(f"{name} is not installed (Debian: apt-get install mosquitto)")
    return found


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class MosquittoFiles:
    """Where one broker instance keeps its configuration and state."""

    directory: Path

    @property
    def config(self) -> Path:
        """The rendered mosquitto.conf."""
        return self.directory / "mosquitto.conf"

    @property
    def passwords(self) -> Path:
        """The password file (mosquitto_passwd format)."""
        return self.directory / "passwd"

    @property
    def acl(self) -> Path:
        """The ACL file."""
        return self.directory / "acl"

    @property
    def retain_guard(self) -> Path:
        """The plugin refusing retained messages outside the broadcast topics."""
        return self.directory / LIBRARY_NAME


@dataclass(frozen=True, slots=True)
class TlsListener:
    """The TLS listener of a rendered config: its port, certificates and address."""

    port: int
    certs: Path  # a directory written by ``micropay mqtt certs``
    host: str | None = None  # default: the plain listener's address

    def replacements(self, default_host: str) -> dict[str, str]:
        """The TLS block's lines, checked to point at files that exist."""
        files = CertFiles(self.certs.resolve())
        for needed in (files.ca_cert, files.server_cert, files.server_key):
            if not needed.is_file():
                raise MosquittoError(
                    f"no {needed}: create it with `micropay mqtt certs {self.certs}`"
                )
        return {
            "listener": f"listener {self.port} {self.host or default_host}",
            "cafile": f"cafile {files.ca_cert}",
            "certfile": f"certfile {files.server_cert}",
            "keyfile": f"keyfile {files.server_key}",
        }


def render(
    directory: Path,
    port: int,
    host: str = "127.0.0.1",
    *,
    tls: TlsListener | None = None,
    retain_guard: bool = True,
) -> MosquittoFiles:
    """Write mosquitto.conf, the ACL, an empty password file and the retain guard.

    The template's TLS listener is kept, with ``tls``'s port and certificates, only when
    ``tls`` is given; without it plain callers need no certificates. The retain-guard
    plugin is built (once, cached) and copied next to the config unless ``retain_guard``
    is False, which leaves Mosquitto open to retained-message floods.
    """
    directory = directory.resolve()  # Mosquitto may be started from anywhere
    files = MosquittoFiles(directory)
    replacements = {
        "password_file": f"password_file {files.passwords}",
        "acl_file": f"acl_file {files.acl}",
        "listener": f"listener {port} {host}",
        "persistence_location": f"persistence_location {directory / 'state'}/",
        "plugin": f"plugin {files.retain_guard}",
    }
    tls_replacements = tls.replacements(host) if tls is not None else None
    paragraphs = []
    tls_found = False
    for paragraph in re.split(r"\n\s*\n", TEMPLATE.read_text().strip()):
        lines = paragraph.splitlines()
        keys = {line.split(" ", 1)[0] for line in lines}
        chosen = replacements
        if {"listener", "certfile"} <= keys:  # the TLS listener's block
            tls_found = True
            if tls_replacements is None:
                continue
            chosen = tls_replacements
        if "plugin" in keys and not retain_guard:
            continue
        paragraphs.append("\n".join(chosen.get(line.split(" ", 1)[0], line) for line in lines))
    if tls_replacements is not None and not tls_found:
        raise MosquittoError(f"{TEMPLATE} has no TLS listener block")
    if os.geteuid() == 0:
        # Started as root, Mosquitto would drop to the ``mosquitto`` user, which cannot
        # reach files under a private directory of root's (a demo's or a test's).
        paragraphs.append("user root")
    make_private_dir(directory)
    make_private_dir(directory / "state")
    write_private(files.config, "\n\n".join(paragraphs) + "\n")
    write_private(files.acl, ACL_TEMPLATE.read_text())
    create_private_file(files.passwords)
    if retain_guard:
        try:
            write_private(files.retain_guard, build_retain_guard().read_bytes())
        except RetainGuardError as exc:
            raise MosquittoError(f"{exc} (or render with --no-retain-guard)") from exc
    return files


def add_user(files: MosquittoFiles, username: str, password: str) -> None:
    """Create or update an MQTT user (the ACL is pattern-based, so a user is a line).

    The hash is written in-process: no password ever appears in a command line.
    Mosquitto reads the file again on SIGHUP.
    """
    try:
        set_password(files.passwords, username, password)
    except PasswordFileError as exc:
        raise MosquittoError(str(exc)) from exc


class MosquittoProcess:
    """A Mosquitto started from rendered files; stopped on ``stop()`` or context exit."""

    def __init__(self, files: MosquittoFiles, port: int, log: Path | None = None) -> None:
        self.files = files
        self.port = port
        self.log = log or files.directory / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it accepts connections."""
        with open_private(self.log, append=True) as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed program
                [binary(), "-c", str(self.files.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise MosquittoError(f"mosquitto exited: see {self.log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise MosquittoError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def reload(self) -> None:
        """Make it re-read the password and ACL files (SIGHUP)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        """SIGTERM and wait (it saves its persistence file on a clean exit)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def generated_password() -> str:
    """A random MQTT password."""
    return os.urandom(18).hex()
