"""The golden vectors: the code must reproduce them byte for byte, and they must check out
when recomputed from the primitives alone (hashlib, hmac, cryptography) as the spec says."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.crypto import MacKey
from protocol.envelope import open_body, parse, verify_mac
from protocol.messages import Payment
from tests.vectors.generate import build

VECTORS = Path(__file__).parent.parent / "vectors"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return data


@pytest.mark.parametrize(
    "name", ["keys", "chain", "certificate", "commitment", "payment", "redemption"]
)
def test_code_reproduces_the_stored_vector(name: str) -> None:
    assert build()[name] == load(name)


def test_chain_recomputed_from_sha256() -> None:
    vector = load("chain")
    words = [bytes.fromhex(w) for w in vector["words"]]
    assert words[vector["length"]] == bytes.fromhex(vector["seed"])
    for index in range(vector["length"], 0, -1):
        expected = hashlib.sha256(
            b"micropay/v1/payword\x00" + index.to_bytes(4, "big") + words[index]
        ).digest()
        assert words[index - 1] == expected


def test_certificate_signature_checks_with_plain_ed25519() -> None:
    signed = msgspec.msgpack.decode(bytes.fromhex(load("certificate")["signed_bytes"]))
    body, signature = signed
    assert body == bytes.fromhex(load("certificate")["certificate_bytes"])
    broker_key = bytes.fromhex(load("keys")["broker"]["sign_key"])
    Ed25519PublicKey.from_public_bytes(broker_key).verify(
        signature, b"micropay/v1/certificate\x00" + body
    )
    fields = msgspec.msgpack.decode(body)
    assert fields[:3] == [1, "alice", "buyer"]


def test_commitment_id_and_signature_from_primitives() -> None:
    vector = load("commitment")
    body, signature = msgspec.msgpack.decode(bytes.fromhex(vector["signed_bytes"]))
    assert body == bytes.fromhex(vector["commitment_bytes"])
    digest = hashlib.sha256(b"micropay/v1/commitment-id\x00" + body).digest()
    assert digest.hex() == vector["commitment_id"]
    buyer_key = bytes.fromhex(load("keys")["alice (buyer)"]["sign_key"])
    Ed25519PublicKey.from_public_bytes(buyer_key).verify(
        signature, b"micropay/v1/commitment\x00" + body
    )


def test_payment_envelope_mac_from_hmac() -> None:
    vector = load("payment")
    payload = bytes.fromhex(vector["envelope"])
    topic = vector["topic"].encode()
    key = bytes.fromhex(load("keys")["chain_key alice-shop"])
    signed_part, tag = payload[:-32], payload[-32:]
    expected = hmac.digest(key, len(topic).to_bytes(2, "big") + topic + signed_part, "sha256")
    assert tag == expected
    assert payload[0] == 2  # Auth.CHAIN
    header = msgspec.msgpack.decode(signed_part[1:])
    assert header[:4] == [1, "pay", "alice", "shop"]
    assert header[-1] == bytes.fromhex(vector["body_bytes"])

    parsed = parse(payload)
    verify_mac(parsed, vector["topic"], MacKey(key))
    body = open_body(parsed)
    assert isinstance(body, Payment)
    assert body.index == 3
    assert body.payword.hex() == load("chain")["words"][3]


def test_redemption_envelope_mac_and_pair_key_symmetry() -> None:
    keys = load("keys")
    assert keys["pair_key shop-broker"] == keys["pair_key broker-shop (same)"]
    assert keys["chain_key alice-shop"] == keys["chain_key shop-alice (same)"]
    vector = load("redemption")
    payload = bytes.fromhex(vector["envelope"])
    topic = vector["topic"].encode()
    key = bytes.fromhex(keys["pair_key shop-broker"])
    expected = hmac.digest(key, len(topic).to_bytes(2, "big") + topic + payload[:-32], "sha256")
    assert payload[-32:] == expected
    commitment, index, payword = msgspec.msgpack.decode(bytes.fromhex(vector["body_bytes"]))
    assert commitment == bytes.fromhex(load("commitment")["signed_bytes"])
    assert (index, payword.hex()) == (3, load("chain")["words"][3])
