"""Operator requests, validated at the edge before anything reaches the core or the ledger.

The admin socket takes JSON from any local process its mode lets in, and the CLI passes
what an operator typed: a name, a number or a reason that does not fit is refused here
with a message for a person, not discovered later inside the ledger writer.
"""

from __future__ import annotations

import re
from typing import Any, Final, get_args

from protocol.messages import Role

NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


class AdminInputError(ValueError):
    """A field of an operator request is missing or out of bounds."""


def integer(
    request: dict[str, Any], field: str, low: int, high: int, *, default: int | None = None
) -> int:
    """A whole number within ``low..high`` (JSON booleans and floats are refused)."""
    value = request.get(field, default)
    if value is None:
        raise AdminInputError(f"{field} is missing")
    if not isinstance(value, int) or isinstance(value, bool):
        raise AdminInputError(f"{field} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise AdminInputError(f"{field} must be between {low} and {high}, not {value}")
    return value


def name(request: dict[str, Any], field: str) -> str:
    """An account or period name: 1-64 of A-Z a-z 0-9 . _ -."""
    value = request.get(field)
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise AdminInputError(f"{field} names are 1-64 of A-Z a-z 0-9 . _ -, not {value!r:.80}")
    return value


def text(request: dict[str, Any], field: str, default: str, limit: int) -> str:
    """A short free text (a reason, a currency code)."""
    value = request.get(field, default)
    if not isinstance(value, str) or len(value) > limit:
        raise AdminInputError(f"{field} must be text of at most {limit} characters")
    return value


def role(request: dict[str, Any]) -> Role:
    """``buyer`` or ``vendor``."""
    value = request.get("role")
    if value not in ("buyer", "vendor") or value not in get_args(Role):
        raise AdminInputError(f"role must be buyer or vendor, not {value!r:.40}")
    return value  # type: ignore[no-any-return]
