"""Attacks run against real agents on a real Mosquitto (the fixtures of tests/agents)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.demo.processes import Demo, start
from tests.agents.conftest import mosquitto, tls_mosquitto
from tests.attacks.rogue import harness

__all__ = ["demo", "harness", "mosquitto", "tls_mosquitto"]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """The demo's system as separate processes (Mosquitto, broker, vendors), no payments yet."""
    running = Demo(tmp_path, 0)
    try:
        start(running)
        yield running
    finally:
        running.stop_all()
