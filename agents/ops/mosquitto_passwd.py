"""Write Mosquitto's password file in Python, so no password ever appears in a process's argv.

``mosquitto_passwd -b FILE USER PASSWORD`` puts the password on a command line, readable
by every local user in ``ps`` and ``/proc/*/cmdline``. This module writes the same
``username:$7$...`` lines Mosquitto 2.0's ``mosquitto_passwd`` writes (PBKDF2-HMAC-SHA512,
as read by the broker's ``security_default.c``), replacing the file atomically.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import secrets
import stat
from pathlib import Path

HASH_TYPE = 7  # pw_sha512_pbkdf2 in Mosquitto's password_mosq.h
SALT_LENGTH = 12  # SALT_LEN: the broker drops any entry whose salt is not 12 bytes
HASH_LENGTH = 64  # sizeof(password_hash): the SHA-512 output; the broker wants exactly 64
DEFAULT_ITERATIONS = 101  # PW_DEFAULT_ITERATIONS
MAX_LENGTH = 65535  # an MQTT string or binary field; Mosquitto's limit for both

# What C's isspace() trims around a username when Mosquitto reads the file.
_C_SPACE = b" \t\n\v\f\r"
# Refused by the ACL's %u patterns: a username with these would widen its own topics.
_TOPIC_CHARACTERS = "+#/"


class PasswordFileError(ValueError):
    """A username, password or password file that Mosquitto could not use as given."""


def _is_control(character: str) -> bool:
    """Whether Mosquitto's UTF-8 check refuses ``character`` as a control character."""
    code = ord(character)
    return code <= 0x1F or 0x7F <= code <= 0x9F


def _is_noncharacter(character: str) -> bool:
    """Whether Mosquitto's UTF-8 check refuses ``character`` as a Unicode noncharacter."""
    code = ord(character)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFF) in {0xFFFE, 0xFFFF}


def check_username(username: str) -> bytes:
    """The username's UTF-8 bytes, or ``PasswordFileError`` saying why Mosquitto can't use it."""
    if not username:
        raise PasswordFileError("MQTT username is empty")
    try:
        encoded = username.encode()
    except UnicodeEncodeError:
        raise PasswordFileError(f"MQTT username {username!r} is not valid UTF-8") from None
    if len(encoded) > MAX_LENGTH:
        raise PasswordFileError(f"MQTT username is longer than {MAX_LENGTH} bytes")
    _check_username_characters(username)
    if encoded.strip(_C_SPACE) != encoded:
        raise PasswordFileError(
            f"MQTT username {username!r} must not start or end with white space"
        )
    return encoded


def _check_username_characters(username: str) -> None:
    """Refuse the characters the file, the broker or the ACL cannot take in a username."""
    if ":" in username:
        raise PasswordFileError(f"MQTT username {username!r} must not contain ':'")
    if "\n" in username or "\r" in username:
        raise PasswordFileError(f"MQTT username {username!r} must not contain a line break")
    if any(_is_control(c) for c in username):
        raise PasswordFileError(f"MQTT username {username!r} must not contain control characters")
    if any(_is_noncharacter(c) for c in username):
        raise PasswordFileError(f"MQTT username {username!r} contains a Unicode noncharacter")
    for character in _TOPIC_CHARACTERS:
        if character in username:
            raise PasswordFileError(
                f"MQTT username {username!r} must not contain {character!r} (ACL patterns use %u)"
            )


def check_password(password: str) -> bytes:
    """The password's UTF-8 bytes, or ``PasswordFileError`` (the message never shows it)."""
    if not password:
        raise PasswordFileError("MQTT password is empty")
    try:
        encoded = password.encode()
    except UnicodeEncodeError:
        raise PasswordFileError("MQTT password is not valid UTF-8") from None
    if len(encoded) > MAX_LENGTH:
        raise PasswordFileError(f"MQTT password is longer than {MAX_LENGTH} bytes")
    if "\n" in password or "\r" in password:
        raise PasswordFileError("MQTT password must not contain a line break")
    if "\0" in password:
        # Mosquitto hashes up to the first NUL (strlen): the rest would be ignored.
        raise PasswordFileError("MQTT password must not contain a NUL character")
    return encoded


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = 101) -> str:
    """Mosquitto 2.0's hash of ``password``: ``$7$<iterations>$<base64 salt>$<base64 hash>``.

    The hash is PBKDF2-HMAC-SHA512 of the password's UTF-8 bytes over a 12-byte salt (random
    unless given), 64 bytes long; both are in standard, padded base64.
    """
    secret = check_password(password)
    if salt is None:
        salt = os.urandom(SALT_LENGTH)
    elif len(salt) != SALT_LENGTH:
        raise PasswordFileError(f"salt is {len(salt)} bytes, Mosquitto needs {SALT_LENGTH}")
    if iterations < 1:
        raise PasswordFileError(f"iterations must be at least 1, not {iterations}")
    digest = hashlib.pbkdf2_hmac("sha512", secret, salt, iterations, HASH_LENGTH)
    salt64 = base64.b64encode(salt).decode("ascii")
    hash64 = base64.b64encode(digest).decode("ascii")
    return f"${HASH_TYPE}${iterations}${salt64}${hash64}"


def _line_username(line: bytes) -> bytes | None:
    """The username Mosquitto reads from one line of the file (None: no user on it)."""
    if line.startswith(b"#") or b":" not in line:
        return None
    # Like strtok(line, ":"): the first non-empty field, then trimmed like the broker does.
    for field in line.split(b":"):
        if field:
            return field.strip(_C_SPACE)
    return None


def _lines(content: bytes) -> list[bytes]:
    """The file's lines, each with its own line end (split only at line feeds, like fgets)."""
    lines = [line + b"\n" for line in content.split(b"\n")]
    lines[-1] = lines[-1][:-1]  # the text after the last "\n" has none
    return lines if lines[-1] else lines[:-1]


def _updated(content: bytes, username: bytes, entry: bytes) -> bytes:
    """``content`` with the user's line replaced by ``entry`` (or appended), others kept."""
    out: list[bytes] = []
    found = False
    for line in _lines(content):
        if _line_username(line) != username:
            out.append(line)
        elif not found:  # later lines for the same user are dropped: one entry per user
            out.append(entry)
            found = True
    if not found:
        if out and not out[-1].endswith(b"\n"):
            out[-1] += b"\n"
        out.append(entry)
    return b"".join(out)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _replace(target: Path, data: bytes, owner: tuple[int, int] | None) -> None:
    """Atomically make ``target`` hold ``data``, mode 0600 (and ``owner``'s uid, gid)."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600)
    try:
        try:
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                # Before any secret is written: keep the user Mosquitto reads the file as.
                try:
                    os.fchown(fd, *owner)
                except PermissionError:
                    raise PasswordFileError(
                        f"cannot keep the owner {owner[0]}:{owner[1]} of {target}"
                    ) from None
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def set_password(path: Path, username: str, password: str) -> None:
    """Add ``username`` to Mosquitto's password file at ``path``, or change its password.

    Every other line is kept byte for byte. The file is replaced atomically by one written
    with mode 0600 from its creation (and, when it existed, the same owner and group);
    symbolic links are followed, as ``mosquitto_passwd`` does. Concurrent calls are
    serialised by a lock on the directory. Send Mosquitto a SIGHUP to make it re-read it.
    """
    name = check_username(username)
    entry = name + b":" + hash_password(password).encode("ascii") + b"\n"
    target = Path(os.path.realpath(path))
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        try:
            status = target.stat()
        except FileNotFoundError:
            content, owner = b"", None
        else:
            if not stat.S_ISREG(status.st_mode):
                raise PasswordFileError(f"{target} is not a regular file")
            content, owner = target.read_bytes(), (status.st_uid, status.st_gid)
        _replace(target, _updated(content, name, entry), owner)
        os.fsync(directory)
    finally:
        os.close(directory)  # also releases the lock
