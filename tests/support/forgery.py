"""Credentials and envelopes made by hand, signed or MAC'd with whatever key is given.

With the broker's key, ``certificate`` issues a genuine certificate (the ledger benchmarks
build theirs so); with any other key it is a forgery that still names the broker as its
issuer. Likewise a commitment signed by someone other than its certified buyer, a commit
MAC'd under a key nobody can check yet, and an envelope with a correct MAC or signature
around arbitrary bytes: what an attacker holding some of the keys can send.

Times are the wire's milliseconds (``ms`` converts a clock in seconds).
"""

from __future__ import annotations

from typing import Final

from protocol import topics
from protocol.codec import encode
from protocol.credentials import enroll_proof_data, issue_certificate, sign_commitment
from protocol.crypto import (
    TAG_ENROLL_PROOF,
    TAG_ENVELOPE,
    AgentKeys,
    MacKey,
    chain_key,
    token_key,
)
from protocol.envelope import PROTOCOL_VERSION, Auth, Header, seal
from protocol.messages import Certificate, Commit, Commitment, EnrollRequest, Role
from tests.support.world import seeded_identity

MALLORY: Final = "mallory"
"""The attacker's account name, and the seed of her keys."""
FAKE_BROKER: Final = "fake-broker"
"""The seed of a key that signs as the broker but is not the broker's."""


def ms(seconds: float) -> int:
    """A clock in seconds as the wire's milliseconds."""
    return int(seconds * 1000)


def certificate(  # noqa: PLR0913 - one argument per certificate field
    issuer: AgentKeys,
    holder: AgentKeys,
    subject: str,
    not_before_ms: int,
    not_after_ms: int,
    *,
    serial: int = 9_999,
    role: Role = "buyer",
    credit_limit: int = 10**9,
    currency: str = "EUR",
    issuer_id: str = "broker",
) -> bytes:
    """A certificate of ``holder``'s keys for ``subject``, signed by ``issuer``'s key."""
    return issue_certificate(
        issuer,
        Certificate(
            serial=serial,
            subject=subject,
            role=role,
            sign_key=holder.sign_key,
            agree_key=holder.agree_key,
            credit_limit=credit_limit,
            currency=currency,
            not_before=not_before_ms,
            not_after=not_after_ms,
            issuer=issuer_id,
        ),
    )


def commitment(  # noqa: PLR0913 - one argument per commitment field
    vendor: str,
    buyer_certificate: bytes,
    issued_at_ms: int,
    not_after_ms: int,
    *,
    root: bytes = bytes(32),
    length: int = 100,
    unit_value: int = 1,
    currency: str = "EUR",
) -> Commitment:
    """A commitment to ``vendor`` under any certificate (unsigned: see ``commit``)."""
    return Commitment(
        vendor=vendor,
        buyer_certificate=buyer_certificate,
        root=root,
        length=length,
        unit_value=unit_value,
        currency=currency,
        issued_at=issued_at_ms,
        not_after=not_after_ms,
    )


def chain_mac_key(
    holder: AgentKeys, buyer: str, vendor: str, vendor_agree_key: bytes, cid: bytes
) -> MacKey:
    """The chain MAC key that ``holder``'s keys give ``buyer`` at ``vendor`` for ``cid``."""
    return MacKey(chain_key(holder, vendor_agree_key, buyer, vendor, cid))


def commit(  # noqa: PLR0913 - who signs, who sends, what, and how it is sealed
    signer: AgentKeys,
    body: Commitment,
    *,
    sender: str,
    counter: int,
    now: float,
    vendor_agree_key: bytes | None = None,
) -> tuple[str, bytes, bytes]:
    """``body`` signed by ``signer``, in a commit from ``sender`` to its vendor.

    Returns the topic, the envelope and the commitment id. The MAC is under the chain key
    ``signer`` derives with ``vendor_agree_key``; without one, under a zero key, which no
    vendor gets to check before the commitment's own signatures.
    """
    signed, cid = sign_commitment(signer, body)
    vendor = body.vendor
    key = (
        MacKey(bytes(32))
        if vendor_agree_key is None
        else chain_mac_key(signer, sender, vendor, vendor_agree_key, cid)
    )
    topic = topics.inbox(vendor, sender)
    payload = seal(
        topic,
        Commit(signed),
        auth=Auth.CHAIN,
        sender=sender,
        recipient=vendor,
        counter=counter,
        now=now,
        key=key,
        ref=cid,
    )
    return topic, payload, cid


def enroll_proof_message(account: str, sign_key: bytes, agree_key: bytes) -> bytes:
    """What the proof of possession of an enrollment at "broker" signs, tag included."""
    return TAG_ENROLL_PROOF + enroll_proof_data(account, "broker", sign_key, agree_key)


def enroll(  # noqa: PLR0913 - the request's three fields, who sends it, and when
    account: str,
    token: bytes,
    sign_key: bytes,
    agree_key: bytes,
    proof: bytes,
    *,
    now: float,
) -> tuple[str, bytes, MacKey]:
    """An ``enroll`` to "broker" for any keys and proof, under ``account``'s token key.

    Returns the topic, the envelope and the token key (which the broker's answer is
    MAC'd with): what the holder of a genuine token can send for keys it does not hold.
    """
    key = MacKey(token_key(token, account))
    topic = topics.inbox("broker", account)
    payload = seal(
        topic,
        EnrollRequest(sign_key, agree_key, proof),
        auth=Auth.TOKEN,
        sender=account,
        recipient="broker",
        counter=int(now * 1_000_000),
        now=now,
        key=key,
    )
    return topic, payload, key


def unverifiable_commit(
    now: float, n: int, *, vendor: str = "vendor1", credit_limit: int = 10**6
) -> tuple[str, bytes]:
    """The ``n``-th of distinct commits from mallory whose certificate a fake broker signed.

    The certificate is valid from a minute before ``now`` for an hour, the commitment for
    ten minutes and ``n`` milliseconds; the envelope's MAC is under a zero key. A vendor
    refuses each at the certificate's signature, or sooner once it throttles the sender.
    """
    mallory, now_ms = seeded_identity(MALLORY), ms(now)
    forged = certificate(
        seeded_identity(FAKE_BROKER), mallory, MALLORY, now_ms - 60_000, now_ms + 3_600_000,
        serial=1, credit_limit=credit_limit,
    )  # fmt: skip
    body = commitment(vendor, forged, now_ms, now_ms + 600_000 + n, length=10)
    topic, payload, _ = commit(mallory, body, sender=MALLORY, counter=n, now=now)
    return topic, payload


def topic_prefix(topic: str) -> bytes:
    """What a MAC or signature covers before the envelope: the topic, length-prefixed."""
    raw = topic.encode()
    return len(raw).to_bytes(2, "big") + raw


def seal_header(
    topic: str,
    auth: Auth,
    header: Header,
    *,
    key: MacKey | None = None,
    signer: AgentKeys | None = None,
) -> bytes:
    """An envelope around any header, signed by ``signer`` or else MAC'd with ``key``.

    Unlike ``protocol.envelope.seal`` nothing is checked: the header may carry any type,
    counter, body bytes, or fields of the wrong type, and the signature or MAC is correct.
    """
    signed_part = bytes([auth]) + encode(header)
    if signer is not None:
        return signed_part + signer.sign(TAG_ENVELOPE, topic_prefix(topic) + signed_part)
    if key is None:
        raise TypeError("an envelope needs a key or a signer")
    return signed_part + key.tag(topic_prefix(topic), signed_part)


def seal_raw(  # noqa: PLR0913 - one argument per envelope field
    topic: str,
    type_name: str,
    body: bytes,
    *,
    sender: str,
    recipient: str,
    key: MacKey,
    now: float,
    auth: Auth = Auth.CHAIN,
    ref: bytes = b"",
    counter: int | None = None,
) -> bytes:
    """An envelope with a correct MAC around arbitrary body bytes (what a key holder can send)."""
    header = Header(
        PROTOCOL_VERSION,
        type_name,
        sender,
        recipient,
        ref,
        int(now * 1_000_000) if counter is None else counter,
        ms(now),
        b"",
        body,
    )
    return seal_header(topic, auth, header, key=key)
