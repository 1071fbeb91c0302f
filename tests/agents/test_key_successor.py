"""A rotation's successor keys: new signing and agreement keys, the same derived secrets.

Seeds in a wallet are sealed under ``derive_secret`` (agents/runtime/sealing.py), so keys
made by ``micropay keys rotate`` must derive what their predecessors did, in a file and
in a token alike, or a rotated buyer could no longer open its own wallet.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.runtime.keys_pkcs11 import create_token_keys
from agents.runtime.keystore import (
    create_identity,
    create_successor,
    describe_keys,
    load_identity,
)
from agents.runtime.sealing import SeedSealer
from protocol.crypto import TAG_COMMITMENT, AgentKeys, Identity, verify_signature
from tests.support.softhsm import SoftToken, soft_token

INFO = b"micropay/v1/seal-key\x00"


@pytest.fixture
def token(tmp_path: Path) -> Iterator[SoftToken]:
    with soft_token(tmp_path / "softhsm") as made:
        yield made


def assert_successor(old: AgentKeys, new: AgentKeys) -> None:
    assert new.sign_key != old.sign_key
    assert new.agree_key != old.agree_key
    assert new.derive_secret(INFO) == old.derive_secret(INFO)
    verify_signature(new.sign_key, TAG_COMMITMENT, b"m", new.sign(TAG_COMMITMENT, b"m"))
    sealed = SeedSealer(old, "alice").seal(b"c" * 32, b"s" * 32)
    assert SeedSealer(new, "alice").unseal(b"c" * 32, sealed) == b"s" * 32


def test_a_file_successor_keeps_the_secret_seed(tmp_path: Path) -> None:
    old = create_identity(tmp_path / "agent.key")
    new = create_successor(tmp_path / "agent.key", tmp_path / "agent.key.next")
    assert_successor(old, new)
    assert_successor(old, load_identity(tmp_path / "agent.key.next"))


def test_a_successor_of_a_key_file_without_a_secret_seed_derives_as_it_did(
    tmp_path: Path,
) -> None:
    legacy = Identity.generate()
    path = tmp_path / "agent.key"
    path.touch(mode=0o600)
    path.write_text(
        json.dumps({"sign_seed": legacy.sign_seed.hex(), "agree_seed": legacy.agree_seed.hex()})
    )
    old = load_identity(path)
    assert_successor(old, create_successor(path, tmp_path / "agent.key.next"))


def test_a_token_successor_keeps_the_token_secret_and_takes_the_next_label(
    token: SoftToken, tmp_path: Path
) -> None:
    first = create_token_keys(tmp_path / "agent.key", token.spec("alice"), "token")
    second = create_successor(tmp_path / "agent.key", tmp_path / "agent.key.2")
    assert_successor(first, second)
    shown = describe_keys(tmp_path / "agent.key.2")
    assert shown["key_label"] == "alice.2"
    assert shown["backend"] == "pkcs11"
    third = create_successor(tmp_path / "agent.key.2", tmp_path / "agent.key.3")
    assert_successor(first, third)
    assert describe_keys(tmp_path / "agent.key.3")["key_label"] == "alice.3"
    reopened = load_identity(tmp_path / "agent.key.3")
    assert reopened.sign_key == third.sign_key
    assert reopened.derive_secret(INFO) == first.derive_secret(INFO)
