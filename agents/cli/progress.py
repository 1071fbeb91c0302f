"""A progress bar on stderr for long jobs, quiet when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``label [#####.....]  45%  450,000/1,000,000 events  81,000/s``, redrawn at most 10x/s."""

    def __init__(self, label: str, unit: str = "events", stream: TextIO | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self._started = time.monotonic()
        self._drawn = 0.0

    def __call__(self, done: int, total: int) -> None:
        """Redraw (throttled); the last call, with ``done == total``, always draws."""
        now = time.monotonic()
        if done < total and now - self._drawn < 0.1:
            return
        self._drawn = now
        fraction = done / total if total else 1.0
        filled = int(fraction * 30)
        rate = done / max(now - self._started, 1e-9)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} "
            f"{done:,}/{total:,} {self.unit} {rate:,.0f}/s"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
