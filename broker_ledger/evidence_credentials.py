"""Evidence checks on signatures: the broker's over the bundle, the certificate, the commitment.

Even without a ledger copy these make the bundle binding: the broker signed what it
asserts, and the buyer it certified signed the commitment it is charged under.
"""

from __future__ import annotations

import hmac
from typing import Any

from broker_ledger.evidence import TAG_EVIDENCE, canonical_bytes
from broker_ledger.evidence_bundle import Evidence
from broker_ledger.evidence_report import EvidenceReport
from protocol.codec import (
    decode_certificate,
    decode_commitment,
    decode_signed,
    decode_signed_rotation,
)
from protocol.credentials import NOT_BEFORE_ALLOWANCE_MS, commitment_id
from protocol.crypto import TAG_CERTIFICATE, TAG_COMMITMENT
from protocol.errors import MalformedMessageError, RemoteProtocolError
from protocol.messages import Certificate, Commitment
from protocol.money_rules import signature_ok
from protocol.trusted_keys import TrustedKeys


def check_broker_signature(
    report: EvidenceReport, data: dict[str, Any], evidence: Evidence, expected: bytes | None
) -> None:
    """The broker signed the bundle's canonical bytes, with the key expected (if one is)."""
    report.start("broker-signature")
    key = evidence.broker_key
    if expected is not None and not (
        hmac.compare_digest(key, expected) or _vouched_for(evidence, expected)
    ):
        report.fail(
            "broker-signature",
            f"the bundle names broker key {key.hex()[:16]}…, not the expected"
            f" {expected.hex()[:16]}…",
        )
    try:
        message = canonical_bytes(data)
    except ValueError:
        report.fail("broker-signature", "the bundle has no canonical form (a non-finite number)")
        return
    if not signature_ok(key, TAG_EVIDENCE, message, evidence.signature):
        report.fail("broker-signature", "the signature does not verify over the bundle's bytes")


def check_credentials(
    report: EvidenceReport, evidence: Evidence
) -> tuple[Commitment, Certificate] | None:
    """The broker certified the buyer, the buyer signed the commitment, the fields are its."""
    report.start("certificate-signature", "commitment-signature", "commitment-fields")
    try:
        signed = decode_signed(evidence.signed)
        commitment = decode_commitment(signed.body)
        certificate_signed = decode_signed(commitment.buyer_certificate)
        certificate = decode_certificate(certificate_signed.body)
    except MalformedMessageError as exc:
        for check in ("certificate-signature", "commitment-signature", "commitment-fields"):
            report.fail(check, f"the signed commitment does not decode: {exc}")
        return None
    broker = evidence.part.broker
    key = _certificate_key(report, evidence, certificate)
    if key is not None and not signature_ok(
        key, TAG_CERTIFICATE, certificate_signed.body, certificate_signed.signature
    ):
        report.fail("certificate-signature", "the buyer's certificate is not signed by the broker")
    if certificate.issuer != broker.id:
        report.fail("certificate-signature", f"certificate issued by {certificate.issuer!r}")
    if certificate.role != "buyer":
        report.fail("certificate-signature", f"certificate is for a {certificate.role}")
    earliest = certificate.not_before - NOT_BEFORE_ALLOWANCE_MS  # the clock allowance
    if not earliest <= commitment.issued_at <= certificate.not_after:
        report.fail("certificate-signature", "certificate not valid when the commitment was made")
    if not signature_ok(certificate.sign_key, TAG_COMMITMENT, signed.body, signed.signature):
        report.fail("commitment-signature", "the commitment is not signed by the certified buyer")
    if commitment.currency != certificate.currency:
        report.fail("commitment-signature", "commitment currency differs from the certificate's")
    if commitment.not_after > certificate.not_after:
        report.fail("commitment-signature", "the commitment outlives the buyer's certificate")
    _fields(report, evidence, commitment, certificate, commitment_id(signed.body))
    return commitment, certificate


def _history(evidence: Evidence) -> TrustedKeys:
    """The keys the bundle's rotations chain to the key that signed it (raises if they do not).

    A key the bundle's key vouches for through them may be the one the reader trusts:
    an older ``broker.pub.json``.
    """
    broker = evidence.part.broker
    rotations = [decode_signed_rotation(bytes.fromhex(r)) for r in broker.rotations]
    return TrustedKeys.pinned_to(broker.id, evidence.broker_key).extend(rotations)


def _vouched_for(evidence: Evidence, key: bytes) -> bool:
    """Whether the bundle's key history links ``key`` to the key that signed the bundle."""
    try:
        return _history(evidence).trusts(key)
    except (ValueError, RemoteProtocolError):
        return False


def _certificate_key(
    report: EvidenceReport, evidence: Evidence, certificate: Certificate
) -> bytes | None:
    """The broker key the certificate names (none: the first), through the bundle's rotations."""
    keys = TrustedKeys.pinned_to(evidence.part.broker.id, evidence.broker_key)
    try:
        rotations = [
            decode_signed_rotation(bytes.fromhex(r)) for r in evidence.part.broker.rotations
        ]
        keys = keys.extend(rotations)
        return keys.for_certificate(certificate)
    except (ValueError, RemoteProtocolError) as exc:
        report.fail("certificate-signature", f"the broker's key history does not hold: {exc}")
        return None


def _fields(
    report: EvidenceReport,
    evidence: Evidence,
    commitment: Commitment,
    certificate: Certificate,
    cid: bytes,
) -> None:
    part = evidence.part.commitment
    if cid != evidence.commitment_id:
        report.fail("commitment-fields", "the id is not the hash of the signed commitment")
    claimed = {
        "buyer": part.buyer,
        "buyer_serial": part.buyer_serial,
        "buyer_sign_key": evidence.buyer_sign_key,
        "vendor": part.vendor,
        "unit_value": part.unit_value,
        "currency": part.currency,
        "length": part.length,
        "root": evidence.root,
        "issued_at": part.issued_at,
        "not_after": part.not_after,
    }
    actual = {
        "buyer": certificate.subject,
        "buyer_serial": certificate.serial,
        "buyer_sign_key": certificate.sign_key,
        "vendor": commitment.vendor,
        "unit_value": commitment.unit_value,
        "currency": commitment.currency,
        "length": commitment.length,
        "root": commitment.root,
        "issued_at": commitment.issued_at,
        "not_after": commitment.not_after,
    }
    for name, value in claimed.items():
        if actual[name] != value:
            report.fail("commitment-fields", f"{name} differs from the signed commitment")
