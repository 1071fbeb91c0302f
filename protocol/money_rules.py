"""The money rules of a redemption, written once for everyone who applies or re-checks them.

A redemption moves a commitment's index forward by whole units, each worth the
commitment's unit value; its payword must hash down to the last redeemed word (the root
at first), and no index passes the chain's length. The broker core applies these rules,
the ledger audit and the dispute evidence check re-apply them to what the broker
recorded, so all three must ask exactly the same questions. Pure functions, no I/O.
"""

from __future__ import annotations

import hmac
from enum import Enum, auto
from typing import Final

from protocol import chain
from protocol.crypto import KEY_SIZE, verify_signature
from protocol.errors import AuthenticationError

MAX_TOTAL: Final = 2**63 - 1
"""The wire's ``Count``: balances and invoices must be able to carry every total."""


class Payword(Enum):
    """What a payword offered at an index is worth to a chain: redeemable, or why not."""

    REDEEMABLE = auto()
    BEYOND_LENGTH = auto()
    OFF_CHAIN = auto()


def check_payword(
    payword: bytes, index: int, length: int, last_word: bytes, last_index: int
) -> Payword:
    """Whether ``payword`` at ``index`` extends the chain past its last redeemed word.

    The length is checked before any hashing, so the work stays bounded by the chain the
    buyer signed; then the payword must hash down to ``last_word`` (the root while nothing
    is redeemed) in exactly ``index - last_index`` steps.
    """
    if index > length:
        return Payword.BEYOND_LENGTH
    if not chain.extends(payword, index, last_word, last_index):
        return Payword.OFF_CHAIN
    return Payword.REDEEMABLE


def hashes_to_root(word: bytes, index: int, root: bytes) -> bool:
    """Whether ``w_index`` hashes down to the root in exactly ``index`` steps (0: is the root)."""
    return (
        index >= 0
        and len(word) == KEY_SIZE
        and hmac.compare_digest(chain.walk(word, index, index), root)
    )


def units_between(from_index: int, index: int) -> int:
    """The units a redemption from ``from_index`` up to ``index`` pays for."""
    return index - from_index


def spans(from_index: int, index: int, units: int) -> bool:
    """Whether ``units`` are exactly the words from ``from_index`` up to ``index``."""
    return units == units_between(from_index, index)


def amount_for(units: int, unit_value: int) -> int:
    """What ``units`` words of a chain are worth: an amount is always units times value."""
    return units * unit_value


def within_commitment(amount: int, length: int, unit_value: int) -> bool:
    """Whether ``amount`` credited on one chain stays within what the whole chain is worth."""
    return amount <= amount_for(length, unit_value)


def fits_total(total: int, amount: int) -> bool:
    """Whether ``total + amount`` can still be carried by a balance, invoice or receipt."""
    return total + amount <= MAX_TOTAL


def signature_ok(sign_key: bytes, tag: bytes, data: bytes, signature: bytes) -> bool:
    """Ed25519 check as a boolean, for checks that report a bad signature instead of raising."""
    try:
        verify_signature(sign_key, tag, data, signature)
    except AuthenticationError:
        return False
    return True
