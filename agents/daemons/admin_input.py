"""Operator values, bounded at the edge before anything reaches the core or the ledger.

The admin socket takes requests from any local process its mode lets in, and the CLI
passes what an operator typed: the request's shape and JSON types are checked when it is
decoded (``operator_protocol``); a name, a number or a reason that does not fit is
refused here with a message for a person, not discovered later inside the ledger writer.
"""

from __future__ import annotations

import re
from typing import Final

from broker_ledger.billing import PERIOD, PERIOD_RULE
from protocol.messages import Role

NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


class AdminInputError(ValueError):
    """A field of an operator request is missing or out of bounds."""


def integer(field: str, value: object, low: int, high: int) -> int:
    """A whole number within ``low..high`` (JSON booleans and floats are refused)."""
    if value is None:
        raise AdminInputError(f"{field} is missing")
    if not isinstance(value, int) or isinstance(value, bool):
        raise AdminInputError(f"{field} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise AdminInputError(f"{field} must be between {low} and {high}, not {value}")
    return value


def name(field: str, value: object) -> str:
    """An account name: 1-64 of A-Z a-z 0-9 . _ -."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise AdminInputError(f"{field} names are 1-64 of A-Z a-z 0-9 . _ -, not {value!r:.80}")
    return value


def period(value: object) -> str:
    """A billing period's name: it stays in the ledger for good (``billing.PERIOD_RULE``)."""
    if not isinstance(value, str) or not PERIOD.fullmatch(value):
        raise AdminInputError(f"a period name is {PERIOD_RULE}, not {value!r:.60}")
    return value


def text(field: str, value: object, limit: int) -> str:
    """A short free text (a reason, a currency code)."""
    if not isinstance(value, str) or len(value) > limit:
        raise AdminInputError(f"{field} must be text of at most {limit} characters")
    return value


def role(value: object) -> Role:
    """``buyer`` or ``vendor``."""
    match value:
        case "buyer" | "vendor":
            return value
        case _:
            raise AdminInputError(f"role must be buyer or vendor, not {value!r:.40}")
