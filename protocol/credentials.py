"""Issuing and checking certificates and commitments.

Both travel as ``Signed`` bytes. Verification results are cached by the exact bytes (a
valid signature over given bytes stays valid), so a vendor pays the two Ed25519 checks of a
commitment once, not per message; validity windows are still checked at every use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from protocol.codec import decode_certificate, decode_commitment, decode_signed, encode
from protocol.crypto import (
    TAG_CERTIFICATE,
    TAG_COMMITMENT,
    TAG_COMMITMENT_ID,
    Identity,
    length_prefixed,
    sha256,
    verify_signature,
)
from protocol.errors import AuthenticationError, CertificateError, CommitmentError
from protocol.messages import Certificate, Commitment, Role, Signed


def sign_object(signer: Identity, tag: bytes, body: bytes) -> bytes:
    """``Signed`` bytes of an object: its exact bytes and the signature over ``tag || body``."""
    return encode(Signed(body, signer.sign(tag, body)))


def issue_certificate(broker: Identity, certificate: Certificate) -> bytes:
    """The broker signs a certificate; returns the ``Signed`` bytes agents carry."""
    return sign_object(broker, TAG_CERTIFICATE, encode(certificate))


def commitment_id(commitment_body: bytes) -> bytes:
    """``SHA-256(TAG_COMMITMENT_ID || commitment bytes)``: unique, and fixed by the signed bytes."""
    return sha256(TAG_COMMITMENT_ID + commitment_body)


@dataclass(frozen=True, slots=True)
class VerifiedCommitment:
    """A commitment whose buyer and broker signatures both checked out."""

    id: bytes
    commitment: Commitment
    certificate: Certificate
    signed: bytes


@lru_cache(maxsize=65536)
def _verified_certificate(signed_bytes: bytes, broker_sign_key: bytes) -> Certificate:
    signed = decode_signed(signed_bytes)
    try:
        verify_signature(broker_sign_key, TAG_CERTIFICATE, signed.body, signed.signature)
    except AuthenticationError as exc:
        raise CertificateError("certificate not signed by this broker") from exc
    return decode_certificate(signed.body)


def verify_certificate(  # noqa: PLR0913 - every argument is a distinct check
    signed_bytes: bytes,
    broker_sign_key: bytes,
    broker_id: str,
    now: float,
    role: Role | None = None,
    revoked: frozenset[int] | set[int] = frozenset(),
) -> Certificate:
    """A certificate signed by our broker, valid at ``now``, of ``role``, not revoked."""
    certificate = _verified_certificate(signed_bytes, broker_sign_key)
    now_ms = int(now * 1000)
    if certificate.issuer != broker_id:
        raise CertificateError(f"issued by {certificate.issuer!r}, not {broker_id!r}")
    if not certificate.not_before <= now_ms <= certificate.not_after:
        raise CertificateError(f"certificate {certificate.serial} not valid at {now_ms}")
    if role is not None and certificate.role != role:
        raise CertificateError(f"certificate is for a {certificate.role}, not a {role}")
    if certificate.serial in revoked:
        raise CertificateError(f"certificate {certificate.serial} is revoked")
    return certificate


def sign_commitment(buyer: Identity, commitment: Commitment) -> tuple[bytes, bytes]:
    """The buyer signs M; returns the ``Signed`` bytes and the commitment id."""
    body = encode(commitment)
    return sign_object(buyer, TAG_COMMITMENT, body), commitment_id(body)


@lru_cache(maxsize=65536)
def _verified_commitment(
    signed_bytes: bytes, broker_sign_key: bytes
) -> tuple[bytes, Commitment, bytes]:
    signed = decode_signed(signed_bytes)
    commitment = decode_commitment(signed.body)
    certificate = _verified_certificate(commitment.buyer_certificate, broker_sign_key)
    try:
        verify_signature(certificate.sign_key, TAG_COMMITMENT, signed.body, signed.signature)
    except AuthenticationError as exc:
        raise CommitmentError("commitment not signed by the certified buyer") from exc
    return commitment_id(signed.body), commitment, commitment.buyer_certificate


def verify_commitment(  # noqa: PLR0913 - every argument is a distinct check
    signed_bytes: bytes,
    broker_sign_key: bytes,
    broker_id: str,
    now: float | None,
    vendor: str,
    revoked: frozenset[int] | set[int] = frozenset(),
) -> VerifiedCommitment:
    """A commitment to ``vendor`` by a certified buyer, not expired at ``now``.

    The buyer's certificate must be valid when the commitment was issued and the
    commitment itself must be valid at ``now`` (``None``: skip the expiry check, for
    restoring stored chains).
    """
    cid, commitment, certificate_bytes = _verified_commitment(signed_bytes, broker_sign_key)
    if commitment.vendor != vendor:
        raise CommitmentError(f"commitment is for vendor {commitment.vendor!r}, not {vendor!r}")
    certificate = verify_certificate(
        certificate_bytes,
        broker_sign_key,
        broker_id,
        commitment.issued_at / 1000,
        role="buyer",
        revoked=revoked,
    )
    if now is not None and int(now * 1000) > commitment.not_after:
        raise CommitmentError(f"commitment expired at {commitment.not_after}")
    if commitment.not_after > certificate.not_after:
        raise CommitmentError("commitment outlives the buyer's certificate")
    if commitment.currency != certificate.currency:
        raise CommitmentError("commitment currency differs from the certificate's")
    return VerifiedCommitment(cid, commitment, certificate, signed_bytes)


def enroll_proof_data(account: str, broker: str, sign_key: bytes, agree_key: bytes) -> bytes:
    """What the enrollment proof of possession signs (after ``TAG_ENROLL_PROOF``)."""
    return length_prefixed(account) + length_prefixed(broker) + sign_key + agree_key
