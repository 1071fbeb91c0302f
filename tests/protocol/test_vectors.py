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
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.crypto import MacKey
from protocol.envelope import open_body, parse, verify_mac
from protocol.messages import Payment
from tests.vectors.generate import build

VECTORS = Path(__file__).parent.parent / "vectors"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return data


@pytest.mark.parametrize(
    "name",
    [
        "keys",
        "chain",
        "certificate",
        "commitment",
        "payment",
        "redemption",
        "key_rotation",
        "rekey",
    ],
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


def ed25519_verify(key_hex: str, signature: bytes, message: bytes) -> None:
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex)).verify(signature, message)


def lp(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


def test_key_rotation_signed_by_both_keys_from_primitives() -> None:
    vector = load("key_rotation")
    statement = bytes.fromhex(vector["statement_bytes"])
    fields = msgspec.msgpack.decode(statement)
    assert fields[:2] == ["broker", 1]
    assert fields[2].hex() == vector["old_sign_key"] == load("keys")["broker"]["sign_key"]
    assert fields[3].hex() == vector["new"]["sign_key"]
    assert fields[4].hex() == load("keys")["broker"]["agree_key"]  # the agreement key stays
    tagged = b"micropay/v1/key-rotation\x00" + statement
    old_signature = bytes.fromhex(vector["old_signature"])
    new_signature = bytes.fromhex(vector["new_signature"])
    ed25519_verify(vector["old_sign_key"], old_signature, tagged)
    ed25519_verify(vector["new"]["sign_key"], new_signature, tagged)
    signed = [statement, old_signature, new_signature]
    assert msgspec.msgpack.decode(bytes.fromhex(vector["signed_rotation_bytes"])) == signed
    identity = msgspec.msgpack.decode(bytes.fromhex(vector["identity_body_bytes"]))
    assert identity == ["broker", fields[3], fields[4], [signed]]


def test_a_certificate_naming_the_new_key_verifies_under_it() -> None:
    vector = load("key_rotation")
    body, signature = msgspec.msgpack.decode(bytes.fromhex(vector["signed_certificate_bytes"]))
    assert body == bytes.fromhex(vector["certificate_bytes"])
    ed25519_verify(vector["new"]["sign_key"], signature, b"micropay/v1/certificate\x00" + body)
    fields = msgspec.msgpack.decode(body)
    assert len(fields) == 11  # the first key's certificates keep their 10 fields
    assert fields[10].hex() == vector["new"]["sign_key"]


def test_rekey_request_proof_authorization_and_mac_from_primitives() -> None:
    vector, keys = load("rekey"), load("keys")
    new = vector["new"]
    data = (
        lp("alice")
        + lp("broker")
        + vector["serial"].to_bytes(8, "big")
        + bytes.fromhex(new["sign_key"])
        + bytes.fromhex(new["agree_key"])
    )
    assert data.hex() == vector["signed_data"]
    serial, sign_key, agree_key, proof, authorization = msgspec.msgpack.decode(
        bytes.fromhex(vector["body_bytes"])
    )
    assert (serial, sign_key.hex(), agree_key.hex()) == (1, new["sign_key"], new["agree_key"])
    ed25519_verify(new["sign_key"], proof, b"micropay/v1/rekey-proof\x00" + data)
    ed25519_verify(vector["old_sign_key"], authorization, b"micropay/v1/rekey\x00" + data)
    assert vector["old_sign_key"] == keys["alice (buyer)"]["sign_key"]

    alice = X25519PrivateKey.from_private_bytes(bytes.fromhex(keys["alice (buyer)"]["agree_seed"]))
    broker = X25519PublicKey.from_public_bytes(bytes.fromhex(keys["broker"]["agree_key"]))
    info = b"micropay/v1/pair-key\x00" + lp("alice") + lp("broker")
    pair = HKDF(hashes.SHA256(), 32, None, info).derive(alice.exchange(broker))
    payload, topic = bytes.fromhex(vector["envelope"]), vector["topic"].encode()
    expected = hmac.digest(pair, len(topic).to_bytes(2, "big") + topic + payload[:-32], "sha256")
    assert payload[0] == 0  # Auth.PAIR
    assert payload[-32:] == expected
    header = msgspec.msgpack.decode(payload[1:-32])
    assert header[:4] == [1, "rekey", "alice", "broker"]
    assert (header[7], header[8]) == (b"rekey", bytes.fromhex(vector["body_bytes"]))
