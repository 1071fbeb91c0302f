"""Issuing and checking certificates and commitments.

Both travel as ``Signed`` bytes. Verification results are cached by the exact bytes (a
valid signature over given bytes stays valid), so a vendor pays the two Ed25519 checks of a
commitment once, not per message, and the broker checks a buyer's certificate once, not
for every chain the buyer opens. Only the signature is cached: the issuer, the validity
window, the role and revocation are checked at every use.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Generic, NamedTuple, TypeVar

from protocol.codec import decode_certificate, decode_commitment, decode_signed, encode
from protocol.crypto import (
    TAG_CERTIFICATE,
    TAG_COMMITMENT,
    TAG_COMMITMENT_ID,
    AgentKeys,
    length_prefixed,
    sha256,
    verify_signature,
)
from protocol.envelope import DEFAULT_MAX_SKEW
from protocol.errors import AuthenticationError, CertificateError, CommitmentError
from protocol.messages import Certificate, Commitment, Role, Signed
from protocol.trusted_keys import TrustedKeys, as_trusted

T = TypeVar("T")


def sign_object(signer: AgentKeys, tag: bytes, body: bytes) -> bytes:
    """``Signed`` bytes of an object: its exact bytes and the signature over ``tag || body``."""
    return encode(Signed(body, signer.sign(tag, body)))


def issue_certificate(broker: AgentKeys, certificate: Certificate) -> bytes:
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


class VerifiedCache(Generic[T]):
    """What signed bytes decoded to, once their signatures checked out: a bounded LRU.

    Keyed by the exact ``Signed`` bytes and the broker keys that vouch for them (a key, or
    the digest of a key history), so other bytes, even a re-encoding of the same object,
    are checked afresh, and so is everything once a rotation adds a key. Bytes that
    fail are not remembered: a forgery costs its check every time it is presented.
    ``checks`` counts the verifications run, ``hits`` those the cache saved.
    """

    def __init__(self, verify: Callable[[bytes, TrustedKeys], T], maxsize: int) -> None:
        self._verify = verify
        self.maxsize = maxsize
        self._entries: OrderedDict[tuple[bytes, bytes], T] = OrderedDict()
        self._lock = threading.Lock()  # the caches are per process; cores may be per thread
        self.checks = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, signed_bytes: bytes, broker_keys: TrustedKeys | bytes) -> T:
        """The verified value; raises what ``verify`` raises for bytes that do not check."""
        trusted = as_trusted(broker_keys)
        key = (signed_bytes, trusted.digest)
        entries = self._entries
        with self._lock:
            value = entries.get(key)
            if value is not None:
                entries.move_to_end(key)
                self.hits += 1
                return value
            self.checks += 1
        value = self._verify(signed_bytes, trusted)  # outside the lock: it is slow
        with self._lock:
            entries[key] = value
            if len(entries) > self.maxsize:
                entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget everything (and reset the counters)."""
        with self._lock:
            self._entries.clear()
            self.checks = self.hits = 0


def _check_certificate(signed_bytes: bytes, broker_keys: TrustedKeys) -> Certificate:
    signed = decode_signed(signed_bytes)
    certificate = decode_certificate(signed.body)
    key = broker_keys.for_certificate(certificate)  # the key it names, if the broker had it
    try:
        verify_signature(key, TAG_CERTIFICATE, signed.body, signed.signature)
    except AuthenticationError as exc:
        raise CertificateError("certificate not signed by this broker") from exc
    return certificate


CERTIFICATES: VerifiedCache[Certificate] = VerifiedCache(_check_certificate, 65536)
"""Certificates whose broker signature checked out (a buyer's, for all of its chains)."""


def verify_certificate(  # noqa: PLR0913 - every argument is a distinct check
    signed_bytes: bytes,
    broker_keys: TrustedKeys | bytes,
    broker_id: str,
    now: float,
    role: Role | None = None,
    revoked: frozenset[int] | set[int] = frozenset(),
) -> Certificate:
    """A certificate signed by a key of our broker, valid at ``now``, of ``role``, not revoked."""
    certificate = CERTIFICATES.get(signed_bytes, broker_keys)
    check_certificate_use(certificate, broker_id, now, role, revoked)
    return certificate


NOT_BEFORE_ALLOWANCE_MS: Final = int(DEFAULT_MAX_SKEW * 1000)
"""How far before ``not_before`` a certificate is already good: the envelopes' skew.

``not_before`` is the broker's clock at enrollment; a buyer whose clock runs behind would
otherwise refuse its own fresh certificate, and its first commitment (stamped with its
clock) would be refused by the vendor (docs/PROTOCOL.md 5.2)."""


def check_certificate_use(
    certificate: Certificate,
    broker_id: str,
    now: float,
    role: Role | None = None,
    revoked: frozenset[int] | set[int] = frozenset(),
) -> None:
    """What a verified signature does not settle: issuer, validity, role, revocation.

    Checked at every use, cached signature or not: a revoked certificate is refused
    whether or not its signature was checked before.
    """
    now_ms = int(now * 1000)
    if certificate.issuer != broker_id:
        raise CertificateError(f"issued by {certificate.issuer!r}, not {broker_id!r}")
    if not certificate.not_before - NOT_BEFORE_ALLOWANCE_MS <= now_ms <= certificate.not_after:
        raise CertificateError(f"certificate {certificate.serial} not valid at {now_ms}")
    if role is not None and certificate.role != role:
        raise CertificateError(f"certificate is for a {certificate.role}, not a {role}")
    if certificate.serial in revoked:
        raise CertificateError(f"certificate {certificate.serial} is revoked")


def sign_commitment(buyer: AgentKeys, commitment: Commitment) -> tuple[bytes, bytes]:
    """The buyer signs M; returns the ``Signed`` bytes and the commitment id."""
    body = encode(commitment)
    return sign_object(buyer, TAG_COMMITMENT, body), commitment_id(body)


class _SignedCommitment(NamedTuple):  # a tuple: the collector stops tracking it
    id: bytes
    commitment: Commitment
    certificate: Certificate


def _check_commitment(signed_bytes: bytes, broker_keys: TrustedKeys) -> _SignedCommitment:
    signed = decode_signed(signed_bytes)
    commitment = decode_commitment(signed.body)
    certificate = CERTIFICATES.get(commitment.buyer_certificate, broker_keys)
    try:
        verify_signature(certificate.sign_key, TAG_COMMITMENT, signed.body, signed.signature)
    except AuthenticationError as exc:
        raise CommitmentError("commitment not signed by the certified buyer") from exc
    return _SignedCommitment(commitment_id(signed.body), commitment, certificate)


COMMITMENTS: VerifiedCache[_SignedCommitment] = VerifiedCache(_check_commitment, 65536)
"""Commitments whose buyer and broker signatures both checked out."""


def verify_commitment(  # noqa: PLR0913 - every argument is a distinct check
    signed_bytes: bytes,
    broker_keys: TrustedKeys | bytes,
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
    checked = COMMITMENTS.get(signed_bytes, broker_keys)
    commitment, certificate = checked.commitment, checked.certificate
    if commitment.vendor != vendor:
        raise CommitmentError(f"commitment is for vendor {commitment.vendor!r}, not {vendor!r}")
    check_certificate_use(
        certificate, broker_id, commitment.issued_at / 1000, role="buyer", revoked=revoked
    )
    if now is not None and int(now * 1000) > commitment.not_after:
        raise CommitmentError(f"commitment expired at {commitment.not_after}")
    if commitment.not_after > certificate.not_after:
        raise CommitmentError("commitment outlives the buyer's certificate")
    if commitment.currency != certificate.currency:
        raise CommitmentError("commitment currency differs from the certificate's")
    return VerifiedCommitment(checked.id, commitment, certificate, signed_bytes)


def enroll_proof_data(account: str, broker: str, sign_key: bytes, agree_key: bytes) -> bytes:
    """What the enrollment proof of possession signs (after ``TAG_ENROLL_PROOF``)."""
    return length_prefixed(account) + length_prefixed(broker) + sign_key + agree_key
