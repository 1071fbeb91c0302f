"""The demo's system as real processes: Mosquitto, a broker daemon, two vendor daemons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.demo.processes import VENDORS, Demo, start


@pytest.fixture
def system(tmp_path: Path) -> Iterator[Demo]:
    """Mosquitto, the broker, news-stand and charger-7 running; alice, bob, carol enrolled."""
    running = Demo(tmp_path, 0)
    try:
        start(running)
        yield running
    finally:
        for name in VENDORS:  # first, so that they redeem while the broker still answers
            running.stop(name, timeout=10)
        running.stop_all()
