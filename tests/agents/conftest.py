"""A real Mosquitto, started from the project's mosquitto.conf on a free port, per test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

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
            # Mosquitto reads the file after the signal, and agents do not retry a refusal.
            deadline = time.monotonic() + 10
            while not accepts(self.port, name, self.passwords[name]):
                assert time.monotonic() < deadline, f"Mosquitto never accepted {name}"
        return MqttSettings(port=self.port, username=name, password=self.passwords[name])


def accepts(port: int, username: str, password: str) -> bool:
    """Whether Mosquitto lets ``username`` connect now."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.username_pw_set(username, password)
    codes: list[int] = []
    client.on_connect = lambda _client, _data, _flags, code, _props: codes.append(code.value)
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + 2
    while not codes and time.monotonic() < deadline:
        client.loop(0.05)
    client.disconnect()
    return codes == [0]


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
