"""Errors split by whose fault they are.

``LocalProtocolError`` means we misused the API (a bug on our side).
``RemoteProtocolError`` means a peer sent something bad: log it, reject it, keep running.
Every remote error carries a short stable ``code`` that goes on the wire in an ``Error`` message.
"""

from __future__ import annotations


class MicropayError(Exception):
    """Base class of every error this package raises on purpose."""

    code = "error"


class LocalProtocolError(MicropayError):
    """The caller misused the API: a bug in our own code or configuration."""

    code = "local"


class RemoteProtocolError(MicropayError):
    """A peer sent something we reject. Never fatal for the receiver."""

    code = "remote"


class AuthenticationError(RemoteProtocolError):
    """One opaque error for every authentication failure.

    Unknown key, bad MAC, bad signature and wrong recipient all look alike to
    the peer, so a forger learns nothing from which check failed.
    """

    code = "auth"

    def __init__(self) -> None:
        super().__init__("authentication failed")


class MessageTooLargeError(RemoteProtocolError):
    """The payload is larger than the configured limit; nothing was decoded."""

    code = "too-large"


class MalformedMessageError(RemoteProtocolError):
    """The bytes do not decode into the schema the message type demands."""

    code = "malformed"


class ReplayError(RemoteProtocolError):
    """An authentic envelope whose counter was already seen (or fell out of the window)."""

    code = "replay"


class StaleMessageError(RemoteProtocolError):
    """An authentic envelope whose timestamp is outside the allowed clock skew."""

    code = "stale"


class UnexpectedMessageError(RemoteProtocolError):
    """A well-formed message this role does not accept, or not in this state."""

    code = "unexpected"


class CertificateError(RemoteProtocolError):
    """A certificate that is forged, expired, revoked or of the wrong role."""

    code = "certificate"


class CommitmentError(RemoteProtocolError):
    """A commitment that is forged, expired, for another vendor or out of limits."""

    code = "commitment"


class PaymentError(RemoteProtocolError):
    """A payword that does not extend the chain as the rules require."""

    code = "payment"


class ItemError(RemoteProtocolError):
    """A payment naming an item the vendor does not offer, or paying less than its price."""

    code = "item"


class ScripError(RemoteProtocolError):
    """Scrip a vendor refuses (docs/SCHEMES.md).

    A tag that does not verify, another vendor's or buyer's, expired, worth less than the
    price, or already spent.
    """

    code = "scrip"


class MintError(RemoteProtocolError):
    """The broker refuses to mint scrip (docs/SCHEMES.md 3.11).

    Not a buyer, an unknown or revoked vendor, currencies that differ, or a value above the
    largest mint or the buyer's credit.
    """

    code = "mint"


class DepositError(RemoteProtocolError):
    """The broker refuses a scrip deposit (docs/SCHEMES.md 3.8)."""

    code = "deposit"


class AllowanceError(RemoteProtocolError):
    """The broker refuses a daily allowance grant: not a buyer, or a revoked certificate."""

    code = "allowance"


class RedemptionError(RemoteProtocolError):
    """A redemption the broker refuses to credit."""

    code = "redemption"


class EnrollmentError(RemoteProtocolError):
    """An enrollment request with a spent token, a bad proof of possession or a weak key."""

    code = "enrollment"


class WeakKeyError(EnrollmentError):
    """An enrollment request for a public key nobody should be certified under.

    A small-order or mis-encoded Ed25519 key, or a small-order X25519 key
    (``crypto.weak_key_reason``); answered as ``enrollment``, the detail says which.
    """


class ThrottledError(RemoteProtocolError):
    """The sender spent its budget of costly checks that failed; retry later."""

    code = "throttled"


class LedgerHeadError(RemoteProtocolError):
    """A ledger head the broker is said to have signed, but whose signature does not verify."""

    code = "ledger-head"


class KeyRotationError(RemoteProtocolError):
    """A broker key rotation that does not chain from a key we trust.

    Not signed by the key in force, not signed by the new key, a gap or a fork in the
    sequence, another broker's, or one changing the agreement key.
    """

    code = "key-rotation"


class RekeyError(RemoteProtocolError):
    """A request to certify new keys that the broker refuses (bad proof or authorization)."""

    code = "rekey"
