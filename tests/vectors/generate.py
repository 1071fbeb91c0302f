"""Golden vectors from fixed seeds: ``python -m tests.vectors.generate`` rewrites the JSON files.

Every value is derived from the seeds below, so the files are reproducible byte for byte;
``tests/test_vectors.py`` asserts that the code still produces exactly these bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from protocol import topics
from protocol.chain import HashChain
from protocol.codec import encode
from protocol.credentials import commitment_id, issue_certificate, sign_commitment
from protocol.crypto import Identity, MacKey, chain_key, pair_key, token_key
from protocol.envelope import Auth, seal
from protocol.key_rotation import sign_rotation
from protocol.messages import (
    BrokerIdentity,
    Certificate,
    Commitment,
    KeyRotation,
    Payment,
    Redeem,
)
from protocol.rekey import rekey_data, rekey_request
from protocol.split_keys import SplitKeys

HERE = Path(__file__).parent
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOW_MS = int(NOW * 1000)


def seed(label: str) -> bytes:
    """``SHA-256(label)``: how every secret in the vectors is made."""
    return hashlib.sha256(label.encode()).digest()


def identity(name: str) -> tuple[Identity, dict[str, str]]:
    sign_seed, agree_seed = seed(f"vector:{name}:sign"), seed(f"vector:{name}:agree")
    who = Identity.from_seeds(sign_seed, agree_seed)
    return who, {
        "sign_seed": sign_seed.hex(),
        "agree_seed": agree_seed.hex(),
        "sign_key": who.sign_key.hex(),
        "agree_key": who.agree_key.hex(),
    }


def build() -> dict[str, dict[str, Any]]:
    """All vector files, keyed by file stem."""
    broker, broker_json = identity("broker")
    buyer, buyer_json = identity("alice")
    vendor, vendor_json = identity("shop")

    chain_seed = seed("vector:chain")
    chain = HashChain(chain_seed, 10)

    certificate = Certificate(
        serial=1,
        subject="alice",
        role="buyer",
        sign_key=buyer.sign_key,
        agree_key=buyer.agree_key,
        credit_limit=100_000,
        currency="EUR",
        not_before=NOW_MS,
        not_after=NOW_MS + 365 * 86_400_000,
        issuer="broker",
    )
    signed_certificate = issue_certificate(broker, certificate)

    commitment = Commitment(
        vendor="shop",
        buyer_certificate=signed_certificate,
        root=chain.root,
        length=10,
        unit_value=5,
        currency="EUR",
        issued_at=NOW_MS,
        not_after=NOW_MS + 86_400_000,
    )
    signed_commitment, cid = sign_commitment(buyer, commitment)

    buyer_vendor_key = chain_key(buyer, vendor.agree_key, "alice", "shop", cid)
    vendor_broker_key = pair_key(vendor, "shop", broker.agree_key, "broker")
    token = seed("vector:token")

    payment = Payment(cid, 3, chain.word(3), "article-42")
    payment_topic = topics.inbox("shop", "alice")
    payment_envelope = seal(
        payment_topic,
        payment,
        auth=Auth.CHAIN,
        sender="alice",
        recipient="shop",
        counter=NOW_MS * 1000,
        now=NOW,
        key=MacKey(buyer_vendor_key),
        ref=cid,
    )
    redeem = Redeem(signed_commitment, 3, chain.word(3))
    redeem_topic = topics.inbox("broker", "shop")
    redeem_envelope = seal(
        redeem_topic,
        redeem,
        auth=Auth.PAIR,
        sender="shop",
        recipient="broker",
        counter=NOW_MS * 1000 + 7,
        now=NOW + 60,
        key=MacKey(vendor_broker_key),
        corr=cid[:16],
    )
    return {
        **rotation_vectors(broker, buyer, certificate),
        "keys": {
            "description": "Identities from seeds, and the MAC keys derived between them",
            "broker": broker_json,
            "alice (buyer)": buyer_json,
            "shop (vendor)": vendor_json,
            "pair_key shop-broker": vendor_broker_key.hex(),
            "pair_key broker-shop (same)": pair_key(
                broker, "broker", vendor.agree_key, "shop"
            ).hex(),
            "chain_key alice-shop": buyer_vendor_key.hex(),
            "chain_key shop-alice (same)": chain_key(
                vendor, buyer.agree_key, "alice", "shop", cid
            ).hex(),
            "token": token.hex(),
            "token_key alice": token_key(token, "alice").hex(),
        },
        "chain": {
            "description": "w_n = seed; w_{i-1} = SHA-256(TAG_PAYWORD || u32be(i) || w_i)",
            "seed": chain_seed.hex(),
            "length": 10,
            "words": [chain.word(i).hex() for i in range(11)],
        },
        "certificate": {
            "description": "alice's buyer certificate, signed by the broker",
            "certificate_bytes": encode(certificate).hex(),
            "signed_bytes": signed_certificate.hex(),
        },
        "commitment": {
            "description": "alice commits to the chain vector for shop, 5 minor units a word",
            "commitment_bytes": encode(commitment).hex(),
            "signed_bytes": signed_commitment.hex(),
            "commitment_id": cid.hex(),
            "commitment_id_check": commitment_id(encode(commitment)).hex(),
        },
        "payment": {
            "description": "alice pays 3 units (w_3) to shop, MAC'd with the chain key",
            "topic": payment_topic,
            "body_bytes": encode(payment).hex(),
            "envelope": payment_envelope.hex(),
        },
        "redemption": {
            "description": "shop redeems w_3 at the broker, MAC'd with the pair key",
            "topic": redeem_topic,
            "body_bytes": encode(redeem).hex(),
            "envelope": redeem_envelope.hex(),
        },
    }


def rotation_vectors(
    broker: Identity, buyer: Identity, certificate: Certificate
) -> dict[str, dict[str, Any]]:
    """The broker's key rotation, a certificate under the new key, and alice's rekey."""
    new_broker, new_broker_json = identity("broker-2")
    statement = KeyRotation(
        broker="broker",
        sequence=1,
        old_sign_key=broker.sign_key,
        new_sign_key=new_broker.sign_key,
        agree_key=broker.agree_key,
        from_seq=42,
        at=NOW_MS + 86_400_000,
    )
    rotation = sign_rotation(broker, new_broker, statement)
    identity_body = BrokerIdentity("broker", new_broker.sign_key, broker.agree_key, [rotation])
    renewed = Certificate(
        **{
            **{f: getattr(certificate, f) for f in certificate.__struct_fields__},
            "serial": 2,
            "not_before": statement.at,
            "not_after": statement.at + 365 * 86_400_000,
            "issuer_key": new_broker.sign_key,
        }
    )
    signed_renewed = issue_certificate(SplitKeys(new_broker, broker), renewed)

    new_alice, new_alice_json = identity("alice-2")
    request = rekey_request("alice", "broker", 1, buyer, new_alice)
    topic = topics.inbox("broker", "alice")
    envelope = seal(
        topic,
        request,
        auth=Auth.PAIR,
        sender="alice",
        recipient="broker",
        counter=NOW_MS * 1000 + 9,
        now=NOW + 120,
        key=MacKey(pair_key(buyer, "alice", broker.agree_key, "broker")),
        corr=b"rekey",
    )
    return {
        "key_rotation": {
            "description": (
                "the broker's signing key hands over to broker-2's: the statement signed"
                " by both keys, the identity carrying it, and a certificate naming the new key"
            ),
            "old_sign_key": broker.sign_key.hex(),
            "new": new_broker_json,
            "statement_bytes": encode(statement).hex(),
            "old_signature": rotation.old_signature.hex(),
            "new_signature": rotation.new_signature.hex(),
            "signed_rotation_bytes": encode(rotation).hex(),
            "identity_body_bytes": encode(identity_body).hex(),
            "certificate_bytes": encode(renewed).hex(),
            "signed_certificate_bytes": signed_renewed.hex(),
        },
        "rekey": {
            "description": (
                "alice (certificate 1) asks for new keys: proof by the new key,"
                " authorization by the old, MAC'd with the pair key"
            ),
            "old_sign_key": buyer.sign_key.hex(),
            "new": new_alice_json,
            "serial": 1,
            "signed_data": rekey_data(
                "alice", "broker", 1, new_alice.sign_key, new_alice.agree_key
            ).hex(),
            "body_bytes": encode(request).hex(),
            "topic": topic,
            "envelope": envelope.hex(),
        },
    }


def main() -> None:
    """Rewrite the JSON files (review the diff: a change here is a wire-format change)."""
    for name, content in build().items():
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(content, indent=2) + "\n")
        print(f"wrote {path}")  # noqa: T201


if __name__ == "__main__":
    main()
