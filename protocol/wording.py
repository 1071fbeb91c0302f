"""Numbers in the words a person reads in a refusal: "1 unit", "2 units"."""

from __future__ import annotations


def counted(count: int, noun: str) -> str:
    """``count`` of ``noun``, the noun plural unless there is exactly one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
