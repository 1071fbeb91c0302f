"""An envelope whose ``version`` is not 1 is malformed (docs/PROTOCOL.md 7.2, 9 step 3)."""

from __future__ import annotations

import pytest

from protocol.codec import encode
from protocol.envelope import PROTOCOL_VERSION, Auth, Header, parse
from protocol.errors import MalformedMessageError


def envelope(version: int) -> bytes:
    header = Header(version, "balance?", "buyer1", "broker", b"", 1, 1_000, b"", b"\x90")
    return bytes([Auth.PAIR]) + encode(header) + bytes(32)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_another_protocol_version_is_refused_before_any_key_is_chosen(version: int) -> None:
    with pytest.raises(MalformedMessageError, match=f"protocol version {version} is not"):
        parse(envelope(version))


def test_version_one_parses() -> None:
    assert parse(envelope(PROTOCOL_VERSION)).header.version == 1
