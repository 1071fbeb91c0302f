"""The pure-Python password file writer, checked against the real mosquitto_passwd and broker."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from agents.ops.mosquitto import MosquittoProcess, binary, free_port, render
from agents.ops.mosquitto_passwd import PasswordFileError, hash_password, set_password


def mosquitto_passwd(*args: str | Path) -> None:
    """Run the real mosquitto_passwd (test only: its -b puts the password in argv)."""
    subprocess.run(  # noqa: S603 - fixed program, arguments are data
        [binary("mosquitto_passwd"), *map(str, args)], check=True, capture_output=True
    )


def entries(path: Path) -> dict[str, str]:
    """The file's ``username: hash`` entries."""
    return dict(line.split(":", 1) for line in path.read_text().splitlines())


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test changed it."""
    previous = os.umask(0o022)
    os.umask(previous)
    try:
        yield
    finally:
        os.umask(previous)


# 1. Known answers from the real mosquitto_passwd --------------------------------------------


@pytest.mark.parametrize(
    ("password", "options"),
    [
        ("pw-alice", ()),
        ("sécret: with $, spaces\tand € ✓", ()),
        ("x", ("-I", "1000")),
    ],
)
def test_same_hash_as_mosquitto_passwd(
    tmp_path: Path, password: str, options: tuple[str, ...]
) -> None:
    path = tmp_path / "passwd"
    mosquitto_passwd(*options, "-c", "-b", path, "alice", password)
    theirs = entries(path)["alice"]
    empty, kind, iterations, salt64, hash64 = theirs.split("$")
    assert (empty, kind) == ("", "7")
    assert (len(salt64), len(hash64)) == (16, 88)  # 12 and 64 bytes, padded base64
    salt = base64.b64decode(salt64, validate=True)
    assert hash_password(password, salt=salt, iterations=int(iterations)) == theirs
    if not options:  # mosquitto_passwd's default iteration count is ours
        assert hash_password(password, salt=salt) == theirs


def test_new_hashes_use_fresh_salts() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first.startswith("$7$101$")
    assert first != second


def test_mosquitto_passwd_reads_our_file_and_keeps_our_line(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    set_password(path, "alice", "pw-alice")
    ours = path.read_text()
    mosquitto_passwd("-b", path, "bob", "pw-bob")  # it exits non-zero on a corrupt file
    assert path.read_text().startswith(ours)
    assert set(entries(path)) == {"alice", "bob"}


# 2. Authentication by a real Mosquitto ------------------------------------------------------


async def connect(port: int, username: str, password: str) -> None:
    """Connect over MQTT 5 as ``username`` and disconnect; MqttError if refused."""
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        username=username,
        password=password,
        identifier=username,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    ):
        pass


async def refused(port: int, username: str, password: str) -> None:
    """Assert Mosquitto refuses ``username`` with ``password`` (CONNACK: Not authorized)."""
    with pytest.raises(aiomqtt.MqttCodeError) as refusal:
        await connect(port, username, password)
    assert str(refusal.value.rc) == "Not authorized"


async def accepted(port: int, username: str, password: str) -> bool:
    """Whether Mosquitto lets ``username`` in with ``password``."""
    try:
        await connect(port, username, password)
    except aiomqtt.MqttError:
        return False
    return True


@pytest.mark.asyncio
async def test_mosquitto_authenticates_users_written_by_set_password(tmp_path: Path) -> None:
    port = free_port()
    files = render(tmp_path / "mosquitto", port)
    set_password(files.passwords, "alice", "old-alice")
    set_password(files.passwords, "bob", "pw-bob")
    process = MosquittoProcess(files, port)
    process.start()
    try:
        await connect(port, "alice", "old-alice")
        await connect(port, "bob", "pw-bob")
        for username, password in (("alice", "pw-bob"), ("bob", "old-alice"), ("eve", "x")):
            await refused(port, username, password)

        set_password(files.passwords, "alice", "new-alice")
        process.reload()
        deadline = time.monotonic() + 10
        while not await accepted(port, "alice", "new-alice"):  # SIGHUP is handled async
            assert time.monotonic() < deadline, "Mosquitto never accepted the new password"
            await asyncio.sleep(0.05)
        await refused(port, "alice", "old-alice")
        await connect(port, "bob", "pw-bob")
    finally:
        process.stop()


# 3. File modes and atomic replacement -------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o000])
@pytest.mark.usefixtures("umask")
def test_created_and_rewritten_file_is_0600(tmp_path: Path, mask: int) -> None:
    os.umask(mask)
    path = tmp_path / "passwd"
    set_password(path, "alice", "pw-alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    set_password(path, "bob", "pw-bob")
    with path.open("rb") as old:  # held open, so its inode cannot be reused
        set_password(path, "alice", "pw-alice-2")
        assert b"bob:" in old.read()
        assert os.fstat(old.fileno()).st_ino != path.stat().st_ino  # replaced, not rewritten
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(entries(path)) == {"alice", "bob"}
    assert [child.name for child in tmp_path.iterdir()] == [
        "passwd"
    ]  # no temporary file left behind


@pytest.mark.usefixtures("umask")
def test_loose_existing_file_is_replaced_by_a_0600_one(tmp_path: Path) -> None:
    os.umask(0o022)
    path = tmp_path / "passwd"
    path.write_text("# users\n")
    path.chmod(0o644)
    set_password(path, "alice", "pw-alice")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_and_group_of_an_existing_file_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.touch(mode=0o600)
    os.chown(path, 65534, 65534)  # e.g. the unprivileged user Mosquitto reads the file as
    set_password(path, "alice", "pw-alice")
    status = path.stat()
    assert (status.st_uid, status.st_gid, stat.S_IMODE(status.st_mode)) == (65534, 65534, 0o600)


def test_other_lines_are_kept_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    other = f"bob:{hash_password('pw-bob')}\n"
    path.write_bytes(
        (
            "# managed by micropay\n"
            f"{other}"
            "\n"
            "alice:$7$101$old$old\n"
            "carol:$6$plain-old-line\r\n"
            " alice :$7$duplicate$line\n"
            "dave:$7$no$final-newline"
        ).encode()
    )
    set_password(path, "alice", "pw-alice")
    lines = path.read_bytes().decode().split("\n")
    assert lines[:3] == ["# managed by micropay", other[:-1], ""]
    assert lines[3].startswith("alice:$7$101$")
    assert lines[4:] == ["carol:$6$plain-old-line\r", "dave:$7$no$final-newline"]

    set_password(path, "erin", "pw-erin")  # appended after the line without a newline
    lines = path.read_bytes().decode().split("\n")
    assert lines[5] == "dave:$7$no$final-newline"
    assert lines[6].startswith("erin:$7$101$")
    assert lines[7:] == [""]


def test_symbolic_link_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    link = tmp_path / "passwd"
    link.symlink_to(real)
    set_password(link, "alice", "pw-alice")
    assert link.is_symlink()
    assert set(entries(real)) == {"alice"}


# 4. Refused usernames and passwords ---------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("", "MQTT username is empty"),
        ("a:b", "must not contain ':'"),
        ("a\nb", "must not contain a line break"),
        ("a\rb", "must not contain a line break"),
        ("a\tb", "must not contain control characters"),
        ("a\0b", "must not contain control characters"),
        ("a\x85b", "must not contain control characters"),
        ("a\ud800b", "is not valid UTF-8"),
        ("a\ufffeb", "contains a Unicode noncharacter"),
        ("a+b", "must not contain '+'"),
        ("a#b", "must not contain '#'"),
        ("#a", "must not contain '#'"),
        ("a/b", "must not contain '/'"),
        (" alice", "must not start or end with white space"),
        ("alice ", "must not start or end with white space"),
        ("a" * 65536, "longer than 65535 bytes"),
    ],
)
def test_bad_usernames_are_refused(tmp_path: Path, username: str, message: str) -> None:
    path = tmp_path / "passwd"
    with pytest.raises(PasswordFileError, match=re.escape(message)) as refused:
        set_password(path, username, "pw")
    assert "\n" not in str(refused.value)
    assert isinstance(refused.value, ValueError)
    assert not path.exists()


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("", "MQTT password is empty"),
        ("secret\n", "must not contain a line break"),
        ("sec\rret", "must not contain a line break"),
        ("sec\0ret", "must not contain a NUL character"),
        ("sec\udcffret", "is not valid UTF-8"),
        ("€" * 21846, "longer than 65535 bytes"),
    ],
)
def test_bad_passwords_are_refused_without_showing_them(
    tmp_path: Path, password: str, message: str
) -> None:
    path = tmp_path / "passwd"
    set_password(path, "alice", "pw-alice")
    before = path.read_bytes()
    with pytest.raises(PasswordFileError, match=re.escape(message)) as refused:
        set_password(path, "alice", password)
    assert "sec" not in str(refused.value)
    assert path.read_bytes() == before
    assert [child.name for child in tmp_path.iterdir()] == ["passwd"]


@pytest.mark.parametrize(
    ("salt", "iterations", "message"),
    [(b"short", 101, "salt is 5 bytes, Mosquitto needs 12"), (None, 0, "at least 1")],
)
def test_bad_hash_parameters_are_refused(salt: bytes | None, iterations: int, message: str) -> None:
    with pytest.raises(PasswordFileError, match=re.escape(message)):
        hash_password("pw", salt=salt, iterations=iterations)
