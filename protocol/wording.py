"""Numbers in the words a person reads in a refusal: "1 unit", "2 units"."""

from __future__ import annotations


def counted(count: int, noun: str, *, grouped: bool = False) -> str:
    """``count`` of ``noun``, plural unless exactly one; ``grouped``: ``2,000`` for tables."""
    number = f"{count:,}" if grouped else str(count)
    return f"{number} {noun}" if count == 1 else f"{number} {noun}s"
