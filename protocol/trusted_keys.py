"""The broker signing keys a party trusts: the one it was configured with, and its successors.

Every rotation statement is signed by the key it retires and the key it installs, so
trusting any one key of an unbroken chain means trusting all of them: forwards through
the old keys' signatures, backwards through the new keys'. What each key may sign is
then fixed: a certificate names its key (none: the broker's first), and a ledger head at
``seq`` is signed by the key in force there (the last rotation with ``from_seq <= seq``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.codec import decode_key_rotation
from protocol.errors import CertificateError, KeyRotationError, MalformedMessageError
from protocol.key_rotation import open_rotation
from protocol.messages import Certificate, KeyRotation, SignedRotation

RETIRED_ALLOWANCE_MS = 120_000
"""Clock allowance for a certificate issued just before a rotation (the envelopes' skew)."""


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """A broker's signing keys in order, oldest first, and the statements linking them."""

    broker_id: str
    agree_key: bytes
    pinned: bytes
    statements: tuple[KeyRotation, ...] = ()
    signed: tuple[SignedRotation, ...] = ()
    keys: tuple[bytes, ...] = ()
    digest: bytes = b""

    @classmethod
    def pinned_to(cls, broker_id: str, sign_key: bytes, agree_key: bytes = b"") -> TrustedKeys:
        """Only the configured key (the trust anchor of ``broker.pub.json``)."""
        return cls(broker_id, agree_key, sign_key, keys=(sign_key,), digest=sign_key)

    @property
    def current(self) -> bytes:
        """The key the broker signs with now, as far as we know."""
        return self.keys[-1]

    @property
    def generation(self) -> int:
        """How many rotations lie behind the current key (0: none known)."""
        return self.statements[-1].sequence if self.statements else 0

    @property
    def first(self) -> bytes | None:
        """The broker's first key, if the chain reaches back to it."""
        if not self.statements:
            return self.pinned
        return self.statements[0].old_sign_key if self.statements[0].sequence == 1 else None

    def trusts(self, key: bytes) -> bool:
        """Whether ``key`` is one of the broker's keys."""
        return key in self.keys

    def for_certificate(self, certificate: Certificate) -> bytes:
        """The key a certificate must be signed by: the one it names, or the broker's first.

        A retired key vouches only for certificates from before its retirement (their
        ``not_before``, within the clock allowance, at or before the rotation's ``at``): a
        retired key that leaked cannot mint new ones that agents would take.
        """
        named = certificate.issuer_key
        if named:
            if named not in self.keys:
                raise CertificateError("certificate names a key this broker never had")
            key = named
        else:
            first = self.first
            if first is None:
                raise CertificateError(
                    "certificate of the broker's first key, beyond its key history"
                )
            key = first
        for statement in self.statements:
            if (
                statement.old_sign_key == key
                and certificate.not_before > statement.at + RETIRED_ALLOWANCE_MS
            ):
                raise CertificateError(
                    f"certificate issued after its key was retired (rotation {statement.sequence})"
                )
        return key

    def for_seq(self, seq: int) -> bytes:
        """The key that signs the broker's ledger head at ``seq``."""
        for statement in reversed(self.statements):
            if statement.from_seq <= seq:
                return statement.new_sign_key
        return self.keys[0]

    def extend(self, rotations: Iterable[SignedRotation]) -> TrustedKeys:
        """These keys and the ones ``rotations`` add; ``KeyRotationError`` if they do not chain.

        A statement already held must come back unchanged (two different statements with
        one sequence number are a fork); together they must run without a gap, each
        retiring the key the one before installed, and still hold the configured key.
        """
        by_sequence = {s.sequence: raw for s, raw in zip(self.statements, self.signed, strict=True)}
        for raw in rotations:
            sequence = _claimed(raw).sequence
            held = by_sequence.setdefault(sequence, raw)
            if held != raw:
                raise KeyRotationError(f"two different rotations with sequence {sequence}")
        if len(by_sequence) == len(self.signed):
            return self
        return self._chain([by_sequence[n] for n in sorted(by_sequence)])

    def _chain(self, ordered: list[SignedRotation]) -> TrustedKeys:
        """Verify a whole chain, sorted by sequence, and that it holds the pinned key."""
        statements: list[KeyRotation] = []
        for raw in ordered:
            previous = statements[-1] if statements else None
            claimed = _claimed(raw)
            if previous is not None and claimed.sequence != previous.sequence + 1:
                raise KeyRotationError(
                    f"a gap in the broker's key history: rotation {previous.sequence}"
                    f" is followed by {claimed.sequence}"
                )
            # The first statement's old key is vouched for by the keys after it.
            in_force = claimed.old_sign_key if previous is None else previous.new_sign_key
            statement = open_rotation(raw, self.broker_id, in_force)
            if self.agree_key and statement.agree_key != self.agree_key:
                raise KeyRotationError(f"rotation {statement.sequence} changes the agreement key")
            statements.append(statement)
        keys = (statements[0].old_sign_key, *(s.new_sign_key for s in statements))
        if self.pinned not in keys:
            raise KeyRotationError(
                "the broker's key history does not reach the configured key (it starts at"
                f" rotation {statements[0].sequence}): configure its current broker.pub.json"
            )
        return TrustedKeys(
            self.broker_id,
            self.agree_key,
            self.pinned,
            tuple(statements),
            tuple(ordered),
            keys,
            hashlib.sha256(b"".join(keys)).digest(),
        )


def _claimed(raw: SignedRotation) -> KeyRotation:
    """What a statement says, before its signatures are checked (to sort and link)."""
    try:
        return decode_key_rotation(raw.statement)
    except MalformedMessageError as exc:
        raise KeyRotationError(f"rotation statement does not decode: {exc}") from exc


def as_trusted(keys: TrustedKeys | bytes) -> TrustedKeys:
    """A bare key (the broker's, before rotation existed) as a one-key set."""
    return keys if isinstance(keys, TrustedKeys) else TrustedKeys.pinned_to("", keys)
