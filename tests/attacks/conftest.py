"""Attacks run against real agents on a real Mosquitto (the fixture of tests/agents)."""

from tests.agents.conftest import mosquitto
from tests.attacks.rogue import harness

__all__ = ["harness", "mosquitto"]
