"""The golden vectors: the code must reproduce them byte for byte, and they must check out
when recomputed from the primitives alone (hashlib, hmac, cryptography) as the spec says.

The ``*_from_inputs`` tests rebuild every file from its ``inputs`` with nothing but
hashlib, hmac, cryptography and MessagePack on plain values (msgspec's encoder, as the
spec buyer uses it), the way an implementer working from docs/PROTOCOL.md would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.crypto import Identity, MacKey
from protocol.endpoint import BrokerInfo
from protocol.envelope import open_body, parse, verify_mac
from protocol.errors import AuthenticationError
from protocol.messages import OfferItem, Payment, ScripPaid
from protocol.vendor import VendorCore, VendorTerms
from tests.vectors.generate import build

VECTORS = Path(__file__).parent.parent / "vectors"
STORED = sorted(path.stem for path in VECTORS.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return data


def test_every_generated_vector_is_stored_and_every_stored_one_generated() -> None:
    assert sorted(build()) == STORED
    assert {"enrollment", "signed_envelopes", "receipt", "redemption_receipt", "error"} <= set(
        STORED
    )


@pytest.mark.parametrize("name", STORED)
def test_code_reproduces_the_stored_vector(name: str) -> None:
    assert build()[name] == load(name)


def seed_entries(value: object) -> list[dict[str, Any]]:
    """Every identity given as an input, wherever it is nested."""
    if isinstance(value, dict):
        found = [value] if "sign_seed_label" in value else []
        for item in value.values():
            found += seed_entries(item)
        return found
    if isinstance(value, list):
        return [entry for item in value for entry in seed_entries(item)]
    return []


@pytest.mark.parametrize("name", STORED)
def test_every_file_carries_its_inputs(name: str) -> None:
    vector = load(name)
    assert isinstance(vector["description"], str)
    assert vector["description"]
    inputs = vector["inputs"]
    assert isinstance(inputs, dict)
    assert inputs
    for entry in seed_entries(inputs):  # each seed is what its label says
        assert entry["sign_seed"] == hashlib.sha256(entry["sign_seed_label"].encode()).hexdigest()
        assert entry["agree_seed"] == hashlib.sha256(entry["agree_seed_label"].encode()).hexdigest()


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


# --- rebuilding every file from its inputs: the primitives alone, nothing from protocol/ ----

TAG_CERTIFICATE = b"micropay/v1/certificate\x00"
TAG_COMMITMENT = b"micropay/v1/commitment\x00"
TAG_COMMITMENT_ID = b"micropay/v1/commitment-id\x00"
TAG_ENROLL_PROOF = b"micropay/v1/enroll-proof\x00"
TAG_ENVELOPE = b"micropay/v1/envelope\x00"
TAG_KEY_ROTATION = b"micropay/v1/key-rotation\x00"
TAG_REKEY = b"micropay/v1/rekey\x00"
TAG_REKEY_PROOF = b"micropay/v1/rekey-proof\x00"
TAG_PAYWORD = b"micropay/v1/payword\x00"
TAG_CHECKPOINT = b"micropay/v1/ledger-checkpoint\x00"
INFO_PAIR = b"micropay/v1/pair-key\x00"
INFO_CHAIN = b"micropay/v1/chain-key\x00"
INFO_TOKEN = b"micropay/v1/token-key\x00"
AUTH_BYTE = {"PAIR": 0, "TOKEN": 1, "CHAIN": 2, "SIGNED": 3, "SCRIP": 4}
CERTIFICATE_FIELDS = (
    "serial",
    "subject",
    "role",
    "sign_key",
    "agree_key",
    "credit_limit",
    "currency",
    "not_before",
    "not_after",
    "issuer",
    "issuer_key",  # left out of the array while empty (5.2)
)
KEY_FIELDS = {"sign_key", "agree_key", "issuer_key"}


def unhex(text: str) -> bytes:
    return bytes.fromhex(text)


def pack(value: object) -> bytes:
    """MessagePack of plain lists, ints, str, bytes and bools."""
    return msgspec.msgpack.encode(value)


def sha256_of_label(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt or None, info).derive(ikm)


def signer_of(who: dict[str, str]) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(unhex(who["sign_seed"]))


def sign_key_of(who: dict[str, str]) -> bytes:
    return signer_of(who).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def agree_key_of(who: dict[str, str]) -> bytes:
    private = X25519PrivateKey.from_private_bytes(unhex(who["agree_seed"]))
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519(me: dict[str, str], peer: dict[str, str]) -> bytes:
    private = X25519PrivateKey.from_private_bytes(unhex(me["agree_seed"]))
    return private.exchange(X25519PublicKey.from_public_bytes(agree_key_of(peer)))


def pair_key(me: dict[str, str], peer: dict[str, str], agent: str, broker: str) -> bytes:
    """4.3: salt empty, the two ids sorted bytewise."""
    first, second = sorted([agent, broker], key=str.encode)
    info = INFO_PAIR + lp(first) + lp(second)
    return hkdf(x25519(me, peer), b"", info)


def chain_key(me: dict[str, str], peer: dict[str, str], spec: dict[str, str]) -> bytes:
    """4.3: salted with the commitment id, buyer first."""
    info = INFO_CHAIN + lp(spec["buyer"]) + lp(spec["vendor"])
    return hkdf(x25519(me, peer), unhex(spec["salt_commitment_id"]), info)


def words(seed: bytes, length: int) -> list[bytes]:
    chain = [seed]
    for index in range(length, 0, -1):
        chain.insert(0, hashlib.sha256(TAG_PAYWORD + index.to_bytes(4, "big") + chain[0]).digest())
    return chain


def certificate_body(fields: dict[str, Any]) -> bytes:
    return pack(
        [
            unhex(fields[f]) if f in KEY_FIELDS else fields[f]
            for f in CERTIFICATE_FIELDS
            if f in fields
        ]
    )


def signed(signer: Ed25519PrivateKey, tag: bytes, body: bytes) -> bytes:
    """5.1: the exact bytes and the signature over ``tag || body``."""
    return pack([body, signer.sign(tag + body)])


def topic_of(envelope: dict[str, Any]) -> str:
    """8.1: a broadcast's kind is its type; an inbox names recipient, then sender."""
    if envelope["auth"] == "SIGNED":
        return f"micropay/v1/pub/{envelope['sender']}/{envelope['type']}"
    return f"micropay/v1/in/{envelope['recipient']}/{envelope['sender']}"


def seal(
    envelope: dict[str, Any],
    body: bytes,
    *,
    key: bytes = b"",
    signer: Ed25519PrivateKey | None = None,
) -> dict[str, str]:
    """7.1-7.3: the envelope and every intermediate, named as in the vector files."""
    topic = topic_of(envelope)
    header = [
        1,
        envelope["type"],
        envelope["sender"],
        envelope["recipient"],
        unhex(envelope["ref"]),
        envelope["counter"],
        envelope["timestamp"],
        unhex(envelope["corr"]),
        body,
    ]
    signed_part = bytes([AUTH_BYTE[envelope["auth"]]]) + pack(header)
    prefix = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    out = {"topic": topic, "body_bytes": body.hex(), "signed_part": signed_part.hex()}
    out["topic_prefix"] = prefix.hex()
    if signer is not None:
        trailer = signer.sign(TAG_ENVELOPE + prefix + signed_part)
        out["signature_input"] = (TAG_ENVELOPE + prefix + signed_part).hex()
        out["signature"] = trailer.hex()
    else:
        trailer = hmac.digest(key, prefix + signed_part, "sha256")
        out["mac_input"] = (prefix + signed_part).hex()
        out["mac"] = trailer.hex()
    out["envelope"] = (signed_part + trailer).hex()
    return out


def outputs(vector: dict[str, Any], *names: str) -> dict[str, Any]:
    """The named outputs of a vector (all of them when none are named)."""
    skip = ("description", "inputs")
    return {n: v for n, v in vector.items() if (n in names if names else n not in skip)}


ENVELOPE_OUTPUTS = ("topic", "body_bytes", "envelope")


def test_keys_from_inputs() -> None:
    vector = load("keys")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    for name, stored in (
        ("broker", "broker"),
        ("alice", "alice (buyer)"),
        ("shop", "shop (vendor)"),
    ):
        assert stored in vector
        assert vector[stored]["sign_seed"] == ids[name]["sign_seed"]
        assert vector[stored]["agree_seed"] == ids[name]["agree_seed"]
        assert vector[stored]["sign_key"] == sign_key_of(ids[name]).hex()
        assert vector[stored]["agree_key"] == agree_key_of(ids[name]).hex()
    agent, broker = inputs["pair_key"]["agent"], inputs["pair_key"]["broker"]
    assert (agent, broker) == ("shop", "broker")
    assert vector["pair_key shop-broker"] == pair_key(ids[agent], ids[broker], agent, broker).hex()
    assert (
        vector["pair_key broker-shop (same)"]
        == pair_key(ids[broker], ids[agent], agent, broker).hex()
    )
    spec = inputs["chain_key"]
    assert spec["salt_commitment_id"] == load("commitment")["commitment_id"]
    buyer, vendor = ids[spec["buyer"]], ids[spec["vendor"]]
    assert vector["chain_key alice-shop"] == chain_key(buyer, vendor, spec).hex()
    assert vector["chain_key shop-alice (same)"] == chain_key(vendor, buyer, spec).hex()
    token = sha256_of_label(inputs["token"]["label"])
    assert vector["token"] == token.hex()
    token_info = INFO_TOKEN + lp(inputs["token"]["account"])
    assert vector["token_key alice"] == hkdf(token, b"", token_info).hex()


def test_chain_from_inputs() -> None:
    vector = load("chain")
    inputs = vector["inputs"]
    seed = sha256_of_label(inputs["seed_label"])
    assert inputs["seed"] == seed.hex()
    assert vector["words"] == [word.hex() for word in words(seed, inputs["length"])]


def test_certificate_from_inputs() -> None:
    vector = load("certificate")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    fields = inputs["certificate"]
    assert "issuer_key" not in fields  # the broker's first key: 10 fields
    assert fields["sign_key"] == sign_key_of(ids[fields["subject"]]).hex()
    assert fields["agree_key"] == agree_key_of(ids[fields["subject"]]).hex()
    body = certificate_body(fields)
    assert vector["certificate_bytes"] == body.hex()
    signature_by = signer_of(ids[inputs["signer"]])
    assert vector["signed_bytes"] == signed(signature_by, TAG_CERTIFICATE, body).hex()


def commitment_body(fields: dict[str, Any]) -> bytes:
    return pack(
        [
            fields["vendor"],
            unhex(fields["buyer_certificate"]),
            unhex(fields["root"]),
            fields["length"],
            fields["unit_value"],
            fields["currency"],
            fields["issued_at"],
            fields["not_after"],
        ]
    )


def test_commitment_from_inputs() -> None:
    vector = load("commitment")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    fields = inputs["commitment"]
    assert fields["buyer_certificate"] == load("certificate")["signed_bytes"]
    assert fields["root"] == load("chain")["words"][0]
    body = commitment_body(fields)
    assert vector["commitment_bytes"] == body.hex()
    signature_by = signer_of(ids[inputs["signer"]])
    assert vector["signed_bytes"] == signed(signature_by, TAG_COMMITMENT, body).hex()
    assert vector["commitment_id"] == hashlib.sha256(TAG_COMMITMENT_ID + body).hexdigest()


def payment_body(fields: dict[str, Any]) -> bytes:
    return pack(
        [unhex(fields["commitment_id"]), fields["index"], unhex(fields["payword"]), fields["item"]]
    )


def test_payment_from_inputs() -> None:
    vector = load("payment")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    fields, envelope = inputs["payment"], inputs["envelope"]
    assert fields["commitment_id"] == load("commitment")["commitment_id"] == envelope["ref"]
    assert fields["payword"] == load("chain")["words"][fields["index"]]
    key = chain_key(ids["alice"], ids["shop"], inputs["chain_key"])
    rebuilt = seal(envelope, payment_body(fields), key=key)
    assert outputs(vector, *ENVELOPE_OUTPUTS) == outputs(rebuilt, *ENVELOPE_OUTPUTS)


def test_redemption_from_inputs() -> None:
    vector = load("redemption")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    fields, envelope = inputs["redeem"], inputs["envelope"]
    commitment = load("commitment")
    assert fields["commitment"] == commitment["signed_bytes"]
    assert envelope["corr"] == commitment["commitment_id"][:32]  # its first 16 bytes
    body = pack([unhex(fields["commitment"]), fields["index"], unhex(fields["payword"])])
    agent, broker = inputs["pair_key"]["agent"], inputs["pair_key"]["broker"]
    rebuilt = seal(envelope, body, key=pair_key(ids[agent], ids[broker], agent, broker))
    assert outputs(vector, *ENVELOPE_OUTPUTS) == outputs(rebuilt, *ENVELOPE_OUTPUTS)


def test_key_rotation_from_inputs() -> None:
    vector = load("key_rotation")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    old, new = ids[inputs["old_signer"]], ids[inputs["new_signer"]]
    fields = inputs["statement"]
    assert fields["old_sign_key"] == sign_key_of(old).hex()
    assert fields["new_sign_key"] == sign_key_of(new).hex()
    assert fields["agree_key"] == agree_key_of(old).hex()  # the first key's, kept
    statement = pack(
        [
            fields["broker"],
            fields["sequence"],
            unhex(fields["old_sign_key"]),
            unhex(fields["new_sign_key"]),
            unhex(fields["agree_key"]),
            fields["from_seq"],
            fields["at"],
        ]
    )
    old_signature = signer_of(old).sign(TAG_KEY_ROTATION + statement)
    new_signature = signer_of(new).sign(TAG_KEY_ROTATION + statement)
    rotation = [statement, old_signature, new_signature]
    body = inputs["identity"]
    identity = [body["broker"], unhex(body["sign_key"]), unhex(body["agree_key"]), [rotation]]
    certificate = certificate_body(inputs["certificate"])
    assert inputs["certificate"]["issuer_key"] == sign_key_of(new).hex()
    certificate_signer = signer_of(ids[inputs["certificate_signer"]])
    rebuilt = {
        "statement_bytes": statement.hex(),
        "old_signature": old_signature.hex(),
        "new_signature": new_signature.hex(),
        "signed_rotation_bytes": pack(rotation).hex(),
        "identity_body_bytes": pack(identity).hex(),
        "certificate_bytes": certificate.hex(),
        "signed_certificate_bytes": signed(certificate_signer, TAG_CERTIFICATE, certificate).hex(),
    }
    assert outputs(vector, *rebuilt) == rebuilt


def test_rekey_from_inputs() -> None:
    vector = load("rekey")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    old, new = ids[inputs["old_keys"]], ids[inputs["new_keys"]]
    request = inputs["request"]
    data = (
        lp(request["account"])
        + lp(request["broker"])
        + request["serial"].to_bytes(8, "big")
        + sign_key_of(new)
        + agree_key_of(new)
    )
    body = pack(
        [
            request["serial"],
            sign_key_of(new),
            agree_key_of(new),
            signer_of(new).sign(TAG_REKEY_PROOF + data),
            signer_of(old).sign(TAG_REKEY + data),
        ]
    )
    agent, broker = inputs["pair_key"]["agent"], inputs["pair_key"]["broker"]
    rebuilt = seal(inputs["envelope"], body, key=pair_key(ids[agent], ids[broker], agent, broker))
    assert vector["signed_data"] == data.hex()
    assert outputs(vector, *ENVELOPE_OUTPUTS) == outputs(rebuilt, *ENVELOPE_OUTPUTS)


def test_enrollment_from_inputs() -> None:
    vector = load("enrollment")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    account, broker = inputs["account"], inputs["broker"]
    token = sha256_of_label(inputs["token"]["label"])
    assert inputs["token"]["value"] == token.hex() == load("keys")["token"]
    key = hkdf(token, b"", INFO_TOKEN + lp(account))
    me = ids[account]
    proof_data = lp(account) + lp(broker) + sign_key_of(me) + agree_key_of(me)
    proof = signer_of(me).sign(TAG_ENROLL_PROOF + proof_data)
    enroll = seal(
        inputs["enroll"]["envelope"],
        pack([sign_key_of(me), agree_key_of(me), proof]),
        key=key,
    )
    reply = inputs["enrolled"]
    certificate = certificate_body(reply["certificate"])
    certificate_signed = signed(signer_of(ids[reply["signer"]]), TAG_CERTIFICATE, certificate)
    assert certificate_signed.hex() == load("certificate")["signed_bytes"]
    enrolled = seal(reply["envelope"], pack([certificate_signed]), key=key)
    assert reply["envelope"]["corr"] == inputs["enroll"]["envelope"]["corr"]  # copied
    assert {
        "token_key": key.hex(),
        "proof_data": proof_data.hex(),
        "proof_input": (TAG_ENROLL_PROOF + proof_data).hex(),
        "proof": proof.hex(),
        "enroll": enroll,
        "enrolled": {
            "certificate_bytes": certificate.hex(),
            "certificate_signed_bytes": certificate_signed.hex(),
            **enrolled,
        },
    } == outputs(vector)


def test_signed_envelopes_from_inputs() -> None:
    vector = load("signed_envelopes")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]

    offer = inputs["offer"]
    certificate = certificate_body(offer["certificate"])
    certificate_signed = signed(
        signer_of(ids[offer["certificate_signer"]]), TAG_CERTIFICATE, certificate
    )
    terms = offer["body"]
    offer_body = pack(
        [
            certificate_signed,
            terms["unit_value"],
            terms["currency"],
            terms["max_length"],
            terms["max_jump"],
            terms["online"],
            terms["valid_until"],
            [[item["item"], item["price"]] for item in terms["items"]],
        ]
    )
    rebuilt_offer = seal(offer["envelope"], offer_body, signer=signer_of(ids[offer["signer"]]))
    assert {
        "certificate_bytes": certificate.hex(),
        "certificate_signed_bytes": certificate_signed.hex(),
        **rebuilt_offer,
    } == vector["offer"]

    head = inputs["ledger_head"]
    fields = head["body"]
    assert fields["head"] == sha256_of_label(fields["head_label"]).hex()
    head_body = pack([fields["issuer"], fields["seq"], unhex(fields["head"]), fields["at"]])
    rebuilt_head = seal(head["envelope"], head_body, signer=signer_of(ids[head["signer"]]))
    assert rebuilt_head == vector["ledger_head"]

    revocations = inputs["revocations"]
    fields = revocations["body"]
    assert fields["serials"] == sorted(fields["serials"])
    body = pack([fields["issuer"], fields["sequence"], fields["issued_at"], fields["serials"]])
    signer = signer_of(ids[revocations["signer"]])
    assert seal(revocations["envelope"], body, signer=signer) == vector["revocations"]
    # One broadcast stream per sender: the broker's counters are consecutive.
    assert revocations["envelope"]["counter"] == head["envelope"]["counter"] + 1


def test_signed_envelopes_verify_under_the_public_keys() -> None:
    vector = load("signed_envelopes")
    ids = vector["inputs"]["identities"]
    for part, signer in (("offer", "shop"), ("ledger_head", "broker"), ("revocations", "broker")):
        payload, topic = unhex(vector[part]["envelope"]), vector[part]["topic"].encode()
        assert payload[0] == 3  # SIGNED
        message = TAG_ENVELOPE + len(topic).to_bytes(2, "big") + topic + payload[:-64]
        Ed25519PublicKey.from_public_bytes(sign_key_of(ids[signer])).verify(payload[-64:], message)


def test_receipt_from_inputs() -> None:
    vector = load("receipt")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    fields, envelope = inputs["receipt"], inputs["envelope"]
    assert fields["amount"] == fields["index"] * inputs["unit_value"]
    assert fields["commitment_id"] == envelope["ref"] == load("commitment")["commitment_id"]
    spec = inputs["chain_key"]
    key = chain_key(ids[spec["vendor"]], ids[spec["buyer"]], spec)
    body = pack([unhex(fields["commitment_id"]), fields["index"], fields["amount"]])
    rebuilt = seal(envelope, body, key=key)
    assert {"chain_key": key.hex(), **rebuilt} == outputs(vector)


def test_redemption_receipt_from_inputs() -> None:
    vector = load("redemption_receipt")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    ledger, fields, envelope = inputs["ledger"], inputs["redeemed"], inputs["envelope"]
    assert ledger["head"] == sha256_of_label(ledger["head_label"]).hex()
    assert envelope["corr"] == load("redemption")["inputs"]["envelope"]["corr"]  # copied
    broker_id = ledger["broker"].encode()
    checkpoint = (
        len(broker_id).to_bytes(2, "big")
        + broker_id
        + ledger["seq"].to_bytes(8, "big")
        + unhex(ledger["head"])
    )
    signature = signer_of(ids[ledger["signer"]]).sign(TAG_CHECKPOINT + checkpoint)
    signed_head = [ledger["seq"], unhex(ledger["head"]), signature]
    body = pack([unhex(fields["commitment_id"]), fields["index"], fields["amount"], signed_head])
    agent, broker = inputs["pair_key"]["agent"], inputs["pair_key"]["broker"]
    key = pair_key(ids[broker], ids[agent], agent, broker)
    assert {
        "pair_key": key.hex(),
        "checkpoint_data": checkpoint.hex(),
        "checkpoint_input": (TAG_CHECKPOINT + checkpoint).hex(),
        "checkpoint_signature": signature.hex(),
        "signed_head_bytes": pack(signed_head).hex(),
        **seal(envelope, body, key=key),
    } == outputs(vector)


def test_error_from_inputs() -> None:
    vector = load("error")
    inputs, ids = vector["inputs"], vector["inputs"]["identities"]
    spec = inputs["chain_key"]
    key = chain_key(ids[spec["buyer"]], ids[spec["vendor"]], spec)
    request, error = inputs["request"], inputs["error"]
    assert request["payment"]["payword"] == load("chain")["words"][request["payment"]["index"]]
    assert request["envelope"]["corr"] == request["payment"]["index"].to_bytes(8, "big").hex()
    # The refusal travels on the request's stream: same auth and ref, its corr, reversed inbox.
    for same in ("auth", "ref", "corr"):
        assert error["envelope"][same] == request["envelope"][same]
    assert error["envelope"]["sender"] == request["envelope"]["recipient"]
    assert error["envelope"]["recipient"] == request["envelope"]["sender"]
    error_body = pack([error["body"]["code"], error["body"]["detail"]])
    assert {
        "chain_key": key.hex(),
        "request": seal(request["envelope"], payment_body(request["payment"]), key=key),
        "error": seal(error["envelope"], error_body, key=key),
    } == outputs(vector)


INFO_CUSTOMER_MASTER = b"micropay/v1/customer-master\x00"
INFO_CUSTOMER_SECRET = b"micropay/v1/customer-secret\x00"
INFO_SECRET_WRAP = b"micropay/v1/customer-secret-wrap\x00"


def hmac_hkdf(ikm: bytes, info: bytes) -> bytes:
    """RFC 5869 from ``hmac`` alone: an empty salt, one 32-byte block."""
    prk = hmac.digest(bytes(32), ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


def test_scrip_messages_from_inputs() -> None:
    """SCHEMES.md 3.3, 3.4 and 3.7, from hashlib, hmac and msgspec: no protocol code."""
    vector, scrip = load("scrip_messages"), load("scrip")
    inputs, taken = vector["inputs"], vector["inputs"]["taken_from"]
    assert inputs["pair_keys"] == {
        name: scrip["inputs"]["pair_keys"][name] for name in ("shop-broker", "alice-broker")
    }
    assert taken["scrip"] == "scrip.json tagged_bytes"
    vendor, buyer, period = inputs["vendor"], inputs["buyer"], inputs["period"]
    ref = inputs["vendor_serial"].to_bytes(8, "big") + period.to_bytes(4, "big")
    info = lp(vendor) + period.to_bytes(4, "big")
    master = hmac_hkdf(unhex(inputs["pair_keys"]["shop-broker"]), INFO_CUSTOMER_MASTER + info)
    secret = hmac_hkdf(master, INFO_CUSTOMER_SECRET + lp(buyer))
    pad = hmac_hkdf(unhex(inputs["pair_keys"]["alice-broker"]), INFO_SECRET_WRAP + lp(vendor) + ref)
    wrapped = bytes(a ^ b for a, b in zip(secret, pad, strict=True))
    assert wrapped.hex() == scrip["wrapped_customer_secret"]
    request = sha256_of_label(inputs["request_label"])[:16]
    assert request.hex() == inputs["request"]
    claim = sha256_of_label(inputs["claim_label"])[:16]
    assert claim.hex() == inputs["claim"]

    tagged, change = unhex(scrip["tagged_bytes"]), unhex(scrip["change_tagged_bytes"])
    item, price = inputs["item"], inputs["price"]
    payment, paid = inputs["payment"], inputs["paid"]
    # The reply is on the payment's stream: same auth, ref and corr, the inbox reversed.
    for same in ("auth", "ref", "corr"):
        assert paid[same] == payment[same]
    assert (paid["sender"], paid["recipient"]) == (payment["recipient"], payment["sender"])
    assert payment["ref"] == ref.hex()
    serial, generation = 1, 0  # scrip.json's scrip, as minted
    assert payment["corr"] == (serial.to_bytes(8, "big") + generation.to_bytes(4, "big")).hex()
    value = scrip["inputs"]["scrip"]["value"]
    assert {
        "customer_secret": secret.hex(),
        "ref": ref.hex(),
        "payment": seal(payment, pack([tagged, item, price]), key=secret),
        "paid": seal(paid, pack([serial, generation, price, change]), key=secret),
        "bodies": {
            "scrip?": pack([vendor, value, request]).hex(),
            "scrip": pack([request, tagged, wrapped, None]).hex(),
            "deposit": pack([tagged, item, price, change]).hex(),
            "deposit-online": pack([tagged, item, price, change, claim]).hex(),
            "deposited": pack([serial, generation, price, value - price, change, None]).hex(),
        },
    } == outputs(vector)


def test_the_scrip_payment_vector_verifies_under_the_customer_secret_alone() -> None:
    vector = load("scrip_messages")
    secret = MacKey(unhex(vector["customer_secret"]))
    for name in ("payment", "paid"):
        parsed = parse(unhex(vector[name]["envelope"]))
        verify_mac(parsed, vector[name]["topic"], secret)
        assert parsed.header.ref.hex() == vector["ref"]
        with pytest.raises(AuthenticationError):
            verify_mac(parsed, vector[name]["topic"], MacKey(bytes(32)))
    paid = open_body(parse(unhex(vector["paid"]["envelope"])))
    assert isinstance(paid, ScripPaid)
    assert paid.change.hex() == load("scrip")["change_tagged_bytes"]


def test_the_reference_vendor_answers_with_the_stored_receipt_and_error() -> None:
    """The chain-stream vectors are what the vendor really sends, counters included."""
    ids = load("keys")["inputs"]["identities"]
    broker = BrokerInfo("broker", sign_key_of(ids["broker"]), agree_key_of(ids["broker"]))
    shop = Identity.from_seeds(unhex(ids["shop"]["sign_seed"]), unhex(ids["shop"]["agree_seed"]))
    terms = VendorTerms(
        unit_value=5, max_length=1000, max_jump=100, items=(OfferItem("article-42", 15),)
    )
    vendor = VendorCore("shop", shop, broker, terms)
    vendor.restore_chain(
        unhex(load("commitment")["signed_bytes"]), 0, unhex(load("chain")["words"][0]), 0, 0.0
    )
    receipt, error = load("receipt"), load("error")
    payment = load("payment")
    receipt_at = receipt["inputs"]["envelope"]["timestamp"] / 1000
    vendor.receive(payment["topic"], unhex(payment["envelope"]), receipt_at)
    assert [(o.topic, o.payload.hex()) for o in vendor.data_to_send()] == [
        (receipt["topic"], receipt["envelope"])
    ]
    refused_at = error["inputs"]["error"]["envelope"]["timestamp"] / 1000
    vendor.receive(error["request"]["topic"], unhex(error["request"]["envelope"]), refused_at)
    assert [(o.topic, o.payload.hex()) for o in vendor.data_to_send()] == [
        (error["error"]["topic"], error["error"]["envelope"])
    ]


TAG_ALLOWANCE = b"micropay/v1/allowance\x00"


def test_allowance_from_inputs() -> None:
    """SCHEMES.md 4.2: the grant, its signature and the bodies, from msgspec and cryptography."""
    vector, ids = load("allowance"), load("keys")["inputs"]["identities"]
    inputs, grant = vector["inputs"], vector["inputs"]["grant"]
    commitment = load("commitment")
    issued_at = msgspec.msgpack.decode(unhex(commitment["commitment_bytes"]))[6]
    assert grant["day"] == issued_at // 86_400_000
    fields = ["issuer", "buyer", "serial", "day", "amount", "currency"]
    body = pack([grant[name] for name in fields])
    assert vector["grant_bytes"] == body.hex()
    signed_grant = signed(signer_of(ids[inputs["signer"]]), TAG_ALLOWANCE, body)
    assert vector["signed_grant"] == signed_grant.hex()
    # The vendor's check: the broker's key, the tag, the exact bytes.
    Ed25519PublicKey.from_public_bytes(sign_key_of(ids["broker"])).verify(
        msgspec.msgpack.decode(signed_grant)[1], TAG_ALLOWANCE + body
    )
    assert vector["bodies"] == {
        "allowance?": pack([]).hex(),
        "allowance": pack([signed_grant, None]).hex(),
        "commit": pack([unhex(commitment["signed_bytes"]), signed_grant]).hex(),
    }
