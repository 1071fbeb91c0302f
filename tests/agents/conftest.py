"""A real Mosquitto, started from the project's mosquitto.conf on a free port, per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agents.ops.mosquitto import MosquittoFiles, MosquittoProcess, add_user, free_port, render
from agents.runtime.mqtt import MqttSettings


@dataclass
class Broker:
    """A running Mosquitto and the users created on it."""

    files: MosquittoFiles
    process: MosquittoProcess
    port: int
    passwords: dict[str, str] = field(default_factory=dict)

    def user(self, name: str) -> MqttSettings:
        """Create (or reuse) an MQTT user and return its connection settings."""
        if name not in self.passwords:
            self.passwords[name] = f"pw-{name}"
            add_user(self.files, name, self.passwords[name])
            self.process.reload()
        return MqttSettings(port=self.port, username=name, password=self.passwords[name])


USERS = ("broker", "vendor1", "vendor2", "buyer1", "buyer2", "buyer3", "mallory")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    port = free_port()
    files = render(tmp_path / "mosquitto", port)
    for name in ("broker", "vendor1", "vendor2", "buyer1", "buyer2", "buyer3", "mallory"):
        add_user(files, name, f"pw-{name}")
    process = MosquittoProcess(files, port)
    process.start()
    broker = Broker(
        files,
        process,
        port,
        {
            n: f"pw-{n}"
            for n in ("broker", "vendor1", "vendor2", "buyer1", "buyer2", "buyer3", "mallory")
        },
    )
    try:
        yield broker
    finally:
        process.stop()
