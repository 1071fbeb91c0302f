"""Golden vectors from fixed seeds: ``python -m tests.vectors.generate`` rewrites the JSON files.

Every value is derived from the seeds below, so the files are reproducible byte for byte;
``tests/protocol/test_vectors.py`` asserts that the code still produces exactly these bytes,
and rebuilds each file from its ``inputs`` with the primitives alone.

Each file holds ``description``, ``inputs`` (everything needed to rebuild it, in plain
JSON: names, ints, and hex only for what really is bytes) and the outputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from protocol import topics
from protocol.allowance import sign_grant
from protocol.buyer_rules import payment_corr
from protocol.chain import HashChain
from protocol.codec import encode
from protocol.credentials import (
    commitment_id,
    enroll_proof_data,
    issue_certificate,
    sign_commitment,
)
from protocol.crypto import (
    TAG_ENROLL_PROOF,
    TAG_ENVELOPE,
    Identity,
    MacKey,
    chain_key,
    pair_key,
    token_key,
)
from protocol.envelope import BROADCAST, Auth, parse, seal
from protocol.key_rotation import sign_rotation
from protocol.ledger_heads import TAG_CHECKPOINT, checkpoint_message, sign_head
from protocol.messages import (
    Allowance,
    AllowanceGrant,
    AllowanceQuery,
    Body,
    BrokerIdentity,
    Certificate,
    Commit,
    Commitment,
    Deposit,
    Deposited,
    Enrolled,
    EnrollRequest,
    Error,
    KeyRotation,
    LedgerHead,
    Minted,
    MintRequest,
    Offer,
    OfferItem,
    Payment,
    Receipt,
    Redeem,
    Redeemed,
    RevocationList,
    Scrip,
    ScripPaid,
    ScripPayment,
)
from protocol.rekey import rekey_data, rekey_request
from protocol.scrip import (
    TAG_SCRIP,
    customer_master,
    customer_secret,
    key_ref,
    make_change,
    period_of,
    scrip_key,
    tag_scrip,
    wrap_customer_secret,
)
from protocol.split_keys import SplitKeys

HERE = Path(__file__).parent
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
NOW_MS = int(NOW * 1000)
DAY_MS = 86_400_000


def seed(label: str) -> bytes:
    """``SHA-256(label)``: how every secret in the vectors is made."""
    return hashlib.sha256(label.encode()).digest()


def identity(name: str) -> tuple[Identity, dict[str, str]]:
    """The keys labelled ``name``, and their seeds and public keys (``keys.json``'s form)."""
    sign_seed, agree_seed = seed(f"vector:{name}:sign"), seed(f"vector:{name}:agree")
    who = Identity.from_seeds(sign_seed, agree_seed)
    return who, {
        "sign_seed": sign_seed.hex(),
        "agree_seed": agree_seed.hex(),
        "sign_key": who.sign_key.hex(),
        "agree_key": who.agree_key.hex(),
    }


def seeds(name: str) -> dict[str, str]:
    """An identity as an input: the labels its seeds are hashed from, and the seeds."""
    sign_label, agree_label = f"vector:{name}:sign", f"vector:{name}:agree"
    return {
        "sign_seed_label": sign_label,
        "sign_seed": seed(sign_label).hex(),
        "agree_seed_label": agree_label,
        "agree_seed": seed(agree_label).hex(),
    }


def certificate_fields(certificate: Certificate) -> dict[str, Any]:
    """A certificate's fields in wire order, as an input (keys and ``issuer_key`` in hex)."""
    fields: dict[str, Any] = {}
    for name in certificate.__struct_fields__:
        value = getattr(certificate, name)
        if name == "issuer_key" and not value:
            continue  # left out of the array while empty (PROTOCOL.md 5.2)
        fields[name] = value.hex() if isinstance(value, bytes) else value
    return fields


def sealed(  # noqa: PLR0913 - one argument per header field
    topic: str,
    body: Body,
    *,
    auth: Auth,
    sender: str,
    recipient: str,
    counter: int,
    now: float,
    key: bytes = b"",
    signer: Identity | None = None,
    ref: bytes = b"",
    corr: bytes = b"",
) -> tuple[dict[str, Any], dict[str, str]]:
    """Seal a message: its header fields as an input, and every intermediate as outputs."""
    payload = seal(
        topic,
        body,
        auth=auth,
        sender=sender,
        recipient=recipient,
        counter=counter,
        now=now,
        key=MacKey(key) if key else None,
        signer=signer,
        ref=ref,
        corr=corr,
    )
    parsed = parse(payload)
    prefix = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    outputs = {
        "topic": topic,
        "body_bytes": encode(body).hex(),
        "signed_part": parsed.signed_part.hex(),
        "topic_prefix": prefix.hex(),
    }
    if auth is Auth.SIGNED:
        outputs["signature_input"] = (TAG_ENVELOPE + prefix + parsed.signed_part).hex()
        outputs["signature"] = parsed.trailer.hex()
    else:
        outputs["mac_input"] = (prefix + parsed.signed_part).hex()
        outputs["mac"] = parsed.trailer.hex()
    outputs["envelope"] = payload.hex()
    return envelope_inputs(payload), outputs


def envelope_inputs(payload: bytes) -> dict[str, Any]:
    """The header fields of an envelope, as an input (bytes in hex, the auth by name)."""
    parsed = parse(payload)
    header = parsed.header
    return {
        "auth": parsed.auth.name,
        "type": header.type,
        "sender": header.sender,
        "recipient": header.recipient,
        "ref": header.ref.hex(),
        "counter": header.counter,
        "timestamp": header.timestamp,
        "corr": header.corr.hex(),
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
        not_after=NOW_MS + 365 * DAY_MS,
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
        not_after=NOW_MS + DAY_MS,
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
    chain_key_inputs = {"buyer": "alice", "vendor": "shop", "salt_commitment_id": cid.hex()}
    return {
        **rotation_vectors(broker, buyer, certificate),
        **message_vectors(broker, buyer, vendor, certificate, cid, chain),
        "allowance": allowance_vector(broker, signed_commitment),
        "scrip": scrip_vector(broker, buyer, vendor),
        "scrip_messages": scrip_messages_vector(broker, buyer, vendor),
        "keys": {
            "description": "Identities from seeds, and the MAC keys derived between them",
            "inputs": {
                "identities": {
                    "broker": seeds("broker"),
                    "alice": seeds("alice"),
                    "shop": seeds("shop"),
                },
                "pair_key": {"agent": "shop", "broker": "broker"},
                "chain_key": {
                    **chain_key_inputs,
                    "salt_is": "the commitment id of commitment.json",
                },
                "token": {"label": "vector:token", "account": "alice"},
            },
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
            "inputs": {"seed_label": "vector:chain", "seed": chain_seed.hex(), "length": 10},
            "seed": chain_seed.hex(),
            "length": 10,
            "words": [chain.word(i).hex() for i in range(11)],
        },
        "certificate": {
            "description": "alice's buyer certificate, signed by the broker",
            "inputs": {
                "identities": {"broker": seeds("broker"), "alice": seeds("alice")},
                "certificate": certificate_fields(certificate),
                "signer": "broker",
            },
            "certificate_bytes": encode(certificate).hex(),
            "signed_bytes": signed_certificate.hex(),
        },
        "commitment": {
            "description": "alice commits to the chain vector for shop, 5 minor units a word",
            "inputs": {
                "identities": {"alice": seeds("alice")},
                "commitment": {
                    "vendor": "shop",
                    "buyer_certificate": signed_certificate.hex(),
                    "root": chain.root.hex(),
                    "length": 10,
                    "unit_value": 5,
                    "currency": "EUR",
                    "issued_at": NOW_MS,
                    "not_after": NOW_MS + DAY_MS,
                },
                "signer": "alice",
                "taken_from": {
                    "buyer_certificate": "certificate.json signed_bytes",
                    "root": "chain.json words[0]",
                },
            },
            "commitment_bytes": encode(commitment).hex(),
            "signed_bytes": signed_commitment.hex(),
            "commitment_id": cid.hex(),
            "commitment_id_check": commitment_id(encode(commitment)).hex(),
        },
        "payment": {
            "description": "alice pays 3 units (w_3) to shop, MAC'd with the chain key",
            "inputs": {
                "identities": {"alice": seeds("alice"), "shop": seeds("shop")},
                "chain_key": chain_key_inputs,
                "payment": {
                    "commitment_id": cid.hex(),
                    "index": 3,
                    "payword": chain.word(3).hex(),
                    "item": "article-42",
                },
                "envelope": envelope_inputs(payment_envelope),
                "taken_from": {
                    "commitment_id": "commitment.json commitment_id",
                    "payword": "chain.json words[3]",
                },
            },
            "topic": payment_topic,
            "body_bytes": encode(payment).hex(),
            "envelope": payment_envelope.hex(),
        },
        "redemption": {
            "description": "shop redeems w_3 at the broker, MAC'd with the pair key",
            "inputs": {
                "identities": {"shop": seeds("shop"), "broker": seeds("broker")},
                "pair_key": {"agent": "shop", "broker": "broker"},
                "redeem": {
                    "commitment": signed_commitment.hex(),
                    "index": 3,
                    "payword": chain.word(3).hex(),
                },
                "envelope": envelope_inputs(redeem_envelope),
                "taken_from": {
                    "commitment": "commitment.json signed_bytes",
                    "payword": "chain.json words[3]",
                    "corr": "the first 16 bytes of commitment.json commitment_id",
                },
            },
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
        at=NOW_MS + DAY_MS,
    )
    rotation = sign_rotation(broker, new_broker, statement)
    identity_body = BrokerIdentity("broker", new_broker.sign_key, broker.agree_key, [rotation])
    renewed = Certificate(
        **{
            **{f: getattr(certificate, f) for f in certificate.__struct_fields__},
            "serial": 2,
            "not_before": statement.at,
            "not_after": statement.at + 365 * DAY_MS,
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
            "inputs": {
                "identities": {"broker": seeds("broker"), "broker-2": seeds("broker-2")},
                "statement": {
                    "broker": "broker",
                    "sequence": 1,
                    "old_sign_key": broker.sign_key.hex(),
                    "new_sign_key": new_broker.sign_key.hex(),
                    "agree_key": broker.agree_key.hex(),
                    "from_seq": 42,
                    "at": statement.at,
                },
                "old_signer": "broker",
                "new_signer": "broker-2",
                "identity": {
                    "broker": "broker",
                    "sign_key": new_broker.sign_key.hex(),
                    "agree_key": broker.agree_key.hex(),
                },
                "certificate": certificate_fields(renewed),
                "certificate_signer": "broker-2",
            },
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
            "inputs": {
                "identities": {
                    "alice": seeds("alice"),
                    "alice-2": seeds("alice-2"),
                    "broker": seeds("broker"),
                },
                "request": {"account": "alice", "broker": "broker", "serial": 1},
                "old_keys": "alice",
                "new_keys": "alice-2",
                "pair_key": {"agent": "alice", "broker": "broker"},
                "envelope": envelope_inputs(envelope),
            },
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


def message_vectors(  # noqa: PLR0913 - the parties and what they share
    broker: Identity,
    buyer: Identity,
    vendor: Identity,
    certificate: Certificate,
    cid: bytes,
    chain: HashChain,
) -> dict[str, dict[str, Any]]:
    """Enrollment, the signed broadcasts, a receipt, a redemption's answer and an error."""
    return {
        "enrollment": enrollment_vector(broker, buyer, certificate),
        "signed_envelopes": signed_envelope_vectors(broker, vendor),
        **chain_stream_vectors(buyer, vendor, cid, chain),
        "redemption_receipt": redemption_receipt_vector(broker, vendor, cid),
    }


def enrollment_vector(
    broker: Identity, buyer: Identity, certificate: Certificate
) -> dict[str, Any]:
    """alice enrolls with the token of keys.json and gets certificate.json's certificate."""
    signed_certificate = issue_certificate(broker, certificate)
    token = seed("vector:token")
    key = token_key(token, "alice")
    proof_data = enroll_proof_data("alice", "broker", buyer.sign_key, buyer.agree_key)
    request = EnrollRequest(
        buyer.sign_key, buyer.agree_key, buyer.sign(TAG_ENROLL_PROOF, proof_data)
    )
    enroll_inputs, enroll_outputs = sealed(
        topics.inbox("broker", "alice"),
        request,
        auth=Auth.TOKEN,
        sender="alice",
        recipient="broker",
        counter=(NOW_MS - 1000) * 1000,
        now=NOW - 1,
        key=key,
    )
    enrolled_inputs, enrolled_outputs = sealed(
        topics.inbox("alice", "broker"),
        Enrolled(signed_certificate),
        auth=Auth.TOKEN,
        sender="broker",
        recipient="alice",
        counter=NOW_MS * 1000,
        now=NOW,
        key=key,
    )
    return {
        "description": (
            "alice enrolls with a one-time token: the token key, the proof of possession,"
            " the TOKEN envelope of her EnrollRequest and of the broker's Enrolled reply,"
            " which carries certificate.json's certificate (the broker's clock at enrollment"
            " is its not_before)"
        ),
        "inputs": {
            "identities": {"alice": seeds("alice"), "broker": seeds("broker")},
            "token": {"label": "vector:token", "value": token.hex()},
            "account": "alice",
            "broker": "broker",
            "enroll": {"envelope": enroll_inputs},
            "enrolled": {
                "certificate": certificate_fields(certificate),
                "signer": "broker",
                "envelope": enrolled_inputs,
            },
        },
        "token_key": key.hex(),
        "proof_data": proof_data.hex(),
        "proof_input": (TAG_ENROLL_PROOF + proof_data).hex(),
        "proof": request.proof.hex(),
        "enroll": enroll_outputs,
        "enrolled": {
            "certificate_bytes": encode(certificate).hex(),
            "certificate_signed_bytes": signed_certificate.hex(),
            **enrolled_outputs,
        },
    }


def signed_envelope_vectors(broker: Identity, vendor: Identity) -> dict[str, Any]:
    """The SIGNED broadcasts: shop's offer, the broker's revocation list and ledger head."""
    shop_certificate = Certificate(
        serial=2,
        subject="shop",
        role="vendor",
        sign_key=vendor.sign_key,
        agree_key=vendor.agree_key,
        credit_limit=0,
        currency="EUR",
        not_before=NOW_MS,
        not_after=NOW_MS + 365 * DAY_MS,
        issuer="broker",
    )
    signed_shop_certificate = issue_certificate(broker, shop_certificate)
    items = [OfferItem("article-42", 15), OfferItem("article-7", 5)]
    offer = Offer(
        certificate=signed_shop_certificate,
        unit_value=5,
        currency="EUR",
        max_length=1000,
        max_jump=100,
        online=False,
        valid_until=NOW_MS + DAY_MS,
        items=items,
    )
    offer_inputs, offer_outputs = sealed(
        topics.public("shop", "offer"),
        offer,
        auth=Auth.SIGNED,
        sender="shop",
        recipient=BROADCAST,
        counter=NOW_MS * 1000,
        now=NOW,
        signer=vendor,
    )
    head_seq, head = 17, seed("vector:ledger-head")
    ledger_head = LedgerHead("broker", head_seq, head, NOW_MS + 90_000)
    head_inputs, head_outputs = sealed(
        topics.public("broker", "ledger-head"),
        ledger_head,
        auth=Auth.SIGNED,
        sender="broker",
        recipient=BROADCAST,
        counter=(NOW_MS + 90_000) * 1000,
        now=NOW + 90,
        signer=broker,
    )
    revocations = RevocationList("broker", 2, NOW_MS + 3_600_000, [3, 7])
    revocation_inputs, revocation_outputs = sealed(
        topics.public("broker", "revocations"),
        revocations,
        auth=Auth.SIGNED,
        sender="broker",
        recipient=BROADCAST,
        counter=(NOW_MS + 90_000) * 1000 + 1,  # the next on the broker's broadcast stream
        now=NOW + 3600,
        signer=broker,
    )
    return {
        "description": (
            "SIGNED broadcasts: Ed25519 by the sender over TAG_ENVELOPE || u16be(len(topic))"
            " || topic || auth || header. shop's offer (signed by shop's certified key),"
            " then the broker's ledger head and revocation list (signed by the broker's"
            " first key), consecutive counters on the broker's one broadcast stream"
        ),
        "inputs": {
            "identities": {"broker": seeds("broker"), "shop": seeds("shop")},
            "offer": {
                "certificate": certificate_fields(shop_certificate),
                "certificate_signer": "broker",
                "body": {
                    "unit_value": 5,
                    "currency": "EUR",
                    "max_length": 1000,
                    "max_jump": 100,
                    "online": False,
                    "valid_until": NOW_MS + DAY_MS,
                    "items": [{"item": i.item, "price": i.price} for i in items],
                },
                "signer": "shop",
                "envelope": offer_inputs,
            },
            "ledger_head": {
                "body": {
                    "issuer": "broker",
                    "seq": head_seq,
                    "head_label": "vector:ledger-head",
                    "head": head.hex(),
                    "at": ledger_head.at,
                },
                "signer": "broker",
                "envelope": head_inputs,
            },
            "revocations": {
                "body": {
                    "issuer": "broker",
                    "sequence": 2,
                    "issued_at": revocations.issued_at,
                    "serials": [3, 7],
                },
                "signer": "broker",
                "envelope": revocation_inputs,
            },
        },
        "offer": {
            "certificate_bytes": encode(shop_certificate).hex(),
            "certificate_signed_bytes": signed_shop_certificate.hex(),
            **offer_outputs,
        },
        "ledger_head": head_outputs,
        "revocations": revocation_outputs,
    }


def chain_stream_vectors(
    buyer: Identity, vendor: Identity, cid: bytes, chain: HashChain
) -> dict[str, dict[str, Any]]:
    """On payment.json's chain: shop's receipt for index 3, then its refusal of index 2."""
    key = chain_key(vendor, buyer.agree_key, "alice", "shop", cid)
    chain_key_inputs = {"buyer": "alice", "vendor": "shop", "salt_commitment_id": cid.hex()}
    receipt_inputs, receipt_outputs = sealed(
        topics.inbox("alice", "shop"),
        Receipt(cid, 3, 15),
        auth=Auth.CHAIN,
        sender="shop",
        recipient="alice",
        counter=(NOW_MS + 1000) * 1000,
        now=NOW + 1,
        key=key,
        ref=cid,
    )
    late = Payment(cid, 2, chain.word(2))
    late_inputs, late_outputs = sealed(
        topics.inbox("shop", "alice"),
        late,
        auth=Auth.CHAIN,
        sender="alice",
        recipient="shop",
        counter=NOW_MS * 1000 + 1,  # after payment.json's, on alice's stream
        now=NOW + 2,
        key=key,
        ref=cid,
        corr=payment_corr(2),
    )
    error = Error("payment", "index 2 not above the last accepted 3")
    error_inputs, error_outputs = sealed(
        topics.inbox("alice", "shop"),
        error,
        auth=Auth.CHAIN,
        sender="shop",
        recipient="alice",
        counter=(NOW_MS + 1000) * 1000 + 1,  # after the receipt, on shop's stream
        now=NOW + 2,
        key=key,
        ref=cid,
        corr=payment_corr(2),
    )
    return {
        "receipt": {
            "description": (
                "shop acknowledges payment.json's payment: Receipt(cid, 3, 3 x 5) to alice,"
                " CHAIN under the chain key salted with commitment.json's commitment id"
            ),
            "inputs": {
                "identities": {"alice": seeds("alice"), "shop": seeds("shop")},
                "chain_key": chain_key_inputs,
                "receipt": {"commitment_id": cid.hex(), "index": 3, "amount": 15},
                "unit_value": 5,
                "envelope": receipt_inputs,
                "taken_from": {"commitment_id": "commitment.json commitment_id"},
            },
            "chain_key": key.hex(),
            **receipt_outputs,
        },
        "error": {
            "description": (
                "alice re-sends the payment of index 2 (corr = the index as 8 bytes"
                " big-endian) after shop accepted 3; shop refuses it (rule 3 of 11.6) with an"
                " Error on the same stream: CHAIN, same ref, the request's corr"
            ),
            "inputs": {
                "identities": {"alice": seeds("alice"), "shop": seeds("shop")},
                "chain_key": chain_key_inputs,
                "request": {
                    "payment": {
                        "commitment_id": cid.hex(),
                        "index": 2,
                        "payword": chain.word(2).hex(),
                        "item": "",
                    },
                    "envelope": late_inputs,
                },
                "error": {
                    "body": {"code": error.code, "detail": error.detail},
                    "envelope": error_inputs,
                },
                "taken_from": {
                    "commitment_id": "commitment.json commitment_id",
                    "payword": "chain.json words[2]",
                },
            },
            "chain_key": key.hex(),
            "request": late_outputs,
            "error": error_outputs,
        },
    }


def redemption_receipt_vector(broker: Identity, vendor: Identity, cid: bytes) -> dict[str, Any]:
    """The broker's answer to redemption.json: Redeemed with the signed ledger head."""
    key = pair_key(broker, "broker", vendor.agree_key, "shop")
    head_seq, head = 17, seed("vector:ledger-head")
    signed_head = sign_head(broker, "broker", head_seq, head)
    checkpoint = checkpoint_message("broker", head_seq, head)
    inputs, outputs = sealed(
        topics.inbox("shop", "broker"),
        Redeemed(cid, 3, 15, signed_head),
        auth=Auth.PAIR,
        sender="broker",
        recipient="shop",
        counter=(NOW_MS + 60_000) * 1000,
        now=NOW + 60,
        key=key,
        corr=cid[:16],
    )
    return {
        "description": (
            "the broker credits redemption.json: Redeemed(cid, 3, 15, its signed ledger head"
            " at seq 17, by the key in force there: the first) to shop, PAIR, corr copied"
        ),
        "inputs": {
            "identities": {"broker": seeds("broker"), "shop": seeds("shop")},
            "pair_key": {"agent": "shop", "broker": "broker"},
            "ledger": {
                "broker": "broker",
                "seq": head_seq,
                "head_label": "vector:ledger-head",
                "head": head.hex(),
                "signer": "broker",
            },
            "redeemed": {"commitment_id": cid.hex(), "index": 3, "amount": 15},
            "envelope": inputs,
            "taken_from": {
                "commitment_id": "commitment.json commitment_id",
                "corr": "redemption.json's corr: the first 16 bytes of the commitment id",
            },
        },
        "pair_key": key.hex(),
        "checkpoint_data": checkpoint.hex(),
        "checkpoint_input": (TAG_CHECKPOINT + checkpoint).hex(),
        "checkpoint_signature": signed_head.signature.hex(),
        "signed_head_bytes": encode(signed_head).hex(),
        **outputs,
    }


def scrip_vector(broker: Identity, buyer: Identity, vendor: Identity) -> dict[str, Any]:
    """Scrip worth 100 minted for alice at shop, its keys, and the change after paying 30."""
    vendor_pair = pair_key(vendor, "shop", broker.agree_key, "broker")
    buyer_pair = pair_key(buyer, "alice", broker.agree_key, "broker")
    period = period_of(NOW_MS)
    scrip = Scrip(
        vendor="shop",
        vendor_serial=2,
        period=period,
        serial=1,
        generation=0,
        buyer="alice",
        buyer_serial=1,
        value=100,
        currency="EUR",
        expires=NOW_MS + DAY_MS,
        properties=["country=DE"],
        nonce=seed("vector:scrip-nonce")[:16],
    )
    key = scrip_key(vendor_pair, "shop", period)
    master = customer_master(vendor_pair, "shop", period)
    secret = customer_secret(master, "alice")
    tagged = tag_scrip(scrip, key)
    made = make_change(scrip, 30, key)
    assert made is not None
    change, change_tagged = made
    fields = {n: getattr(scrip, n) for n in scrip.__struct_fields__}
    fields["nonce"] = scrip.nonce.hex()  # the broker's random draw: seed("vector:scrip-nonce")
    return {
        "description": (
            "shop's scrip key and alice's customer secret for one period, scrip worth 100"
            " minted for alice, the customer secret wrapped for her under her pair key, and"
            " the change (generation 1, worth 70) after she pays 30 (docs/SCHEMES.md)"
        ),
        "inputs": {
            "identities": {
                "alice": seeds("alice"),
                "shop": seeds("shop"),
                "broker": seeds("broker"),
            },
            "pair_keys": {
                "shop-broker": vendor_pair.hex(),
                "alice-broker": buyer_pair.hex(),
                "derived_as": "pair_key of PROTOCOL.md 4.3 (shop-broker is keys.json's)",
            },
            "scrip": fields,
            "price": 30,
        },
        "period": period,
        "ref": key_ref(2, period).hex(),
        "scrip_key": key.hex(),
        "customer_master": master.hex(),
        "customer_secret": secret.hex(),
        "wrapped_customer_secret": wrap_customer_secret(
            buyer_pair, "shop", 2, period, secret
        ).hex(),
        "scrip_bytes": encode(scrip).hex(),
        "tag_input": (TAG_SCRIP + encode(scrip)).hex(),
        "tagged_bytes": tagged.hex(),
        "change_bytes": encode(change).hex(),
        "change_tagged_bytes": change_tagged.hex(),
    }


def scrip_messages_vector(broker: Identity, buyer: Identity, vendor: Identity) -> dict[str, Any]:
    """scrip.json's scrip spent at shop under the customer secret, and every scrip body."""
    vendor_pair = pair_key(vendor, "shop", broker.agree_key, "broker")
    buyer_pair = pair_key(buyer, "alice", broker.agree_key, "broker")
    period = period_of(NOW_MS)
    nonce = seed("vector:scrip-nonce")[:16]
    scrip = Scrip(
        "shop", 2, period, 1, 0, "alice", 1, 100, "EUR", NOW_MS + DAY_MS, ["country=DE"], nonce
    )
    key = scrip_key(vendor_pair, "shop", period)
    secret = customer_secret(customer_master(vendor_pair, "shop", period), "alice")
    wrapped = wrap_customer_secret(buyer_pair, "shop", 2, period, secret)
    tagged = tag_scrip(scrip, key)
    made = make_change(scrip, 30, key)
    assert made is not None
    change = made[1]
    ref = key_ref(2, period)
    corr = (1).to_bytes(8, "big") + (0).to_bytes(4, "big")
    request = seed("vector:scrip-request")[:16]
    claim = seed("vector:scrip-claim")[:16]
    pay_inputs, pay_outputs = sealed(
        topics.inbox("shop", "alice"),
        ScripPayment(tagged, "article-42", 30),
        auth=Auth.SCRIP,
        sender="alice",
        recipient="shop",
        counter=(NOW_MS + 5000) * 1000,
        now=NOW + 5,
        key=secret,
        ref=ref,
        corr=corr,
    )
    paid_inputs, paid_outputs = sealed(
        topics.inbox("alice", "shop"),
        ScripPaid(1, 0, 30, change),
        auth=Auth.SCRIP,
        sender="shop",
        recipient="alice",
        counter=(NOW_MS + 6000) * 1000,
        now=NOW + 6,
        key=secret,
        ref=ref,
        corr=corr,
    )
    bodies = {
        "scrip?": MintRequest("shop", 100, request),
        "scrip": Minted(request, tagged, wrapped),
        "deposit": Deposit(tagged, "article-42", 30, change),
        "deposit-online": Deposit(tagged, "article-42", 30, change, claim),
        "deposited": Deposited(1, 0, 30, 70, change),
    }
    return {
        "description": (
            "alice spends 30 of scrip.json's scrip on article-42 at shop: scrip-pay, SCRIP"
            " under her customer secret with ref key_ref(2, period) and corr"
            " u64be(serial) || u32be(generation); shop's scrip-paid with the change on the"
            " same stream; and the bytes of the scrip?, scrip, deposit and deposited bodies"
            " that go with them (ledger nil), and of the deposit an on-line vendor sends, with"
            " its claim (docs/SCHEMES.md 3.4, 3.7, 3.9)"
        ),
        "inputs": {
            "pair_keys": {
                "shop-broker": vendor_pair.hex(),
                "alice-broker": buyer_pair.hex(),
            },
            "vendor": "shop",
            "vendor_serial": 2,
            "period": period,
            "buyer": "alice",
            "item": "article-42",
            "price": 30,
            "request_label": "vector:scrip-request",
            "request": request.hex(),
            "claim_label": "vector:scrip-claim",
            "claim": claim.hex(),
            "payment": pay_inputs,
            "paid": paid_inputs,
            "taken_from": {
                "pair_keys": "scrip.json inputs pair_keys",
                "scrip": "scrip.json tagged_bytes",
                "change": "scrip.json change_tagged_bytes",
                "secret": "scrip.json wrapped_customer_secret",
                "request": "the first 16 bytes of SHA-256(request_label)",
                "claim": "the first 16 bytes of SHA-256(claim_label)",
            },
        },
        "customer_secret": secret.hex(),
        "ref": ref.hex(),
        "payment": pay_outputs,
        "paid": paid_outputs,
        "bodies": {name: encode(body).hex() for name, body in bodies.items()},
    }


def allowance_vector(broker: Identity, signed_commitment: bytes) -> dict[str, Any]:
    """alice's grant for the vectors' day, its ``allowance?``/``allowance`` bodies, and the
    ``commit`` that carries it with commitment.json's chain (docs/SCHEMES.md 4.2)."""
    day = NOW_MS // DAY_MS
    grant = AllowanceGrant("broker", "alice", 1, day, 2_000, "EUR")
    signed_grant = sign_grant(broker, grant)
    bodies: dict[str, Body] = {
        "allowance?": AllowanceQuery(),
        "allowance": Allowance(signed_grant),
        "commit": Commit(signed_commitment, signed_grant),
    }
    return {
        "description": (
            "the broker grants alice 2,000 EUR minor units a vendor may take off-line on the"
            " vectors' UTC day; the Signed grant is over TAG_ALLOWANCE || body; the commit"
            " sends commitment.json's chain (50 = 10 x 5, within the grant) with the grant"
            " appended (ledger nil) (docs/SCHEMES.md 4.2, 4.3)"
        ),
        "inputs": {
            "grant": {
                "issuer": "broker",
                "buyer": "alice",
                "serial": 1,
                "day": day,
                "amount": 2_000,
                "currency": "EUR",
            },
            "day_is": "issued_at of commitment.json // 86,400,000",
            "signer": "broker",
            "taken_from": {"commitment": "commitment.json signed_bytes"},
        },
        "grant_bytes": encode(grant).hex(),
        "signed_grant": signed_grant.hex(),
        "bodies": {name: encode(body).hex() for name, body in bodies.items()},
    }


def main() -> None:
    """Rewrite the JSON files (review the diff: a change here is a wire-format change)."""
    for name, content in build().items():
        path = HERE / f"{name}.json"
        path.write_text(json.dumps(content, indent=2) + "\n")
        print(f"wrote {path}")  # noqa: T201


if __name__ == "__main__":
    main()
