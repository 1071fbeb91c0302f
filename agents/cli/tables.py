"""Plain-text tables for operators: labelled lines and aligned columns, numbers grouped."""

from __future__ import annotations

import time
from collections.abc import Sequence


def shown(value: object) -> str:
    """A cell as a person reads it: integers with thousands separators."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def when(millis: int) -> str:
    """A millisecond timestamp as UTC ISO 8601 (``-`` for none)."""
    if not millis:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(millis / 1000))


def labelled(rows: Sequence[tuple[str, object]]) -> str:
    """``label   value`` lines, the values aligned."""
    width = max((len(label) for label, _ in rows), default=0) + 2
    return "\n".join(f"{label:<{width}}{shown(value)}" for label, value in rows)


def columns(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An aligned table: the first column left-aligned, numbers right-aligned."""
    cells = [list(headers), *([shown(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            f"{cell:<{width}}" if i == 0 else f"{cell:>{width}}"
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
