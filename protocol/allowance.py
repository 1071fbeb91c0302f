"""MiniPay's daily allowance: the signed grant, the broker's amount and the vendor's rule.

Pure functions, no state: the broker signs a grant per buyer and day (docs/SCHEMES.md
4.2), computes its amount from what is left of the buyer's credit (4.4), and a vendor
decides from a grant whether to accept a chain off-line or to register it (4.3).
"""

from __future__ import annotations

from typing import Final

from protocol.codec import decode_allowance_grant, decode_signed, encode
from protocol.credentials import VerifiedCache, sign_object
from protocol.crypto import AgentKeys, verify_signature
from protocol.errors import AllowanceError, AuthenticationError, MalformedMessageError
from protocol.messages import AllowanceGrant, Certificate, Commitment
from protocol.money_rules import amount_for
from protocol.scrip import PERIOD_MS, TAG_ALLOWANCE
from protocol.trusted_keys import TrustedKeys

DAY_MS: Final = PERIOD_MS
"""A grant is good for one UTC day, the scrip key period (SCHEMES 3.2)."""
DEFAULT_ALLOWANCE_VENDORS: Final = 4
"""``K``: the vendors a day's reservation covers (each grant reserves ``K * amount``)."""
LATE_IN_THE_DAY: Final = 600.0
"""Seconds before midnight below which a buyer no longer shortens a chain to the day."""


def day_of(now: float) -> int:
    """The UTC day ``now`` (seconds) falls in: ``period(t)`` of SCHEMES 3.2."""
    return int(now * 1000) // DAY_MS


def day_end(day: int) -> float:
    """The moment (seconds) ``day`` ends and its grants lapse."""
    return (day + 1) * DAY_MS / 1000


def grant_amount(allowance: int, limit: int, debited: int, reserved: int, vendors: int) -> int:
    """SCHEMES 4.4: ``min(a, max(0, (L - debited - reserved) // K))``.

    ``K`` such grants fit in what the buyer has left, so reserving ``K * amount`` keeps
    ``debited + reserved ≤ L``; the amount shrinks to 0 as debits approach the limit.
    """
    return min(allowance, max(0, (limit - debited - reserved) // vendors))


def sign_grant(broker: AgentKeys, grant: AllowanceGrant) -> bytes:
    """The broker signs a day's grant: ``Signed`` bytes over ``TAG_ALLOWANCE || body``."""
    return sign_object(broker, TAG_ALLOWANCE, encode(grant))


def _check_grant(signed_bytes: bytes, keys: TrustedKeys) -> AllowanceGrant:
    try:
        signed = decode_signed(signed_bytes)
        grant = decode_allowance_grant(signed.body)
        verify_signature(keys.current, TAG_ALLOWANCE, signed.body, signed.signature)
    except MalformedMessageError as exc:
        raise AllowanceError(f"allowance grant does not decode: {exc}") from exc
    except AuthenticationError as exc:
        raise AllowanceError("allowance grant not signed by the broker key in force") from exc
    return grant


GRANTS: VerifiedCache[AllowanceGrant] = VerifiedCache(_check_grant, 16_384)
"""Grants whose signature checked out: one verification per grant and key history."""


def verify_grant(signed_bytes: bytes, keys: TrustedKeys, broker_id: str) -> AllowanceGrant:
    """A grant signed by the broker key in force and issued by ``broker_id``.

    Anything else raises ``AllowanceError``: the vendor then registers the chain.
    """
    grant = GRANTS.get(signed_bytes, keys)
    if grant.issuer != broker_id:
        raise AllowanceError(f"allowance grant issued by {grant.issuer!r}, not {broker_id!r}")
    return grant


def offline_refusal(
    grant: AllowanceGrant,
    certificate: Certificate,
    commitment: Commitment,
    now: float,
    used: int,
) -> str | None:
    """Why a vendor must register this chain rather than accept it off-line (SCHEMES 4.3).

    ``used`` is ``today(buyer)``: the value of the chains this vendor accepted off-line from
    the buyer on the grant's day. ``None``: accept off-line, and add the chain's value.
    """
    value = amount_for(commitment.length, commitment.unit_value)
    if (grant.buyer, grant.serial) != (certificate.subject, certificate.serial):
        return "the grant is for another buyer or certificate"
    if grant.currency != commitment.currency:
        return "the grant is in another currency"
    if grant.day != day_of(now):
        return f"the grant is for day {grant.day}, not today ({day_of(now)})"
    if commitment.not_after > (grant.day + 1) * DAY_MS:
        return "the chain outlives the grant's day"
    if used + value > grant.amount:
        return f"{used} already accepted off-line today, {value} more would pass {grant.amount}"
    return None


def chain_end(now: float, not_after: int) -> int:
    """A buyer's ``not_after`` for a vendor that takes grants: the chain ends with the day.

    Off-line acceptance needs a chain that cannot be paid after the grant's day; close to
    midnight the chain keeps its full lifetime instead and goes on-line.
    """
    end = (day_of(now) + 1) * DAY_MS
    if end / 1000 - now < LATE_IN_THE_DAY:
        return not_after
    return min(not_after, end)
