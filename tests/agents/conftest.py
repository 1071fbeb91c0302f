"""A real Mosquitto, started from the project's mosquitto.conf on a free port, per test.

``mosquitto`` has the plain listener; ``tls_mosquitto`` both, with certificates from a
local CA. ``Endpoint.client`` is a raw aiomqtt client on one listener, for the other side
of a test (an attacker, or a peer without our clients' limits).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agents.ops.mosquitto import (
    MosquittoFiles,
    MosquittoProcess,
    TlsListener,
    add_user,
    free_port,
    render,
)
from agents.ops.tls_certs import CertFiles, make_certs
from agents.runtime.mqtt import MqttSettings, tls_context

RAW_CLIENT_TIMEOUT = 2.0  # seconds a raw client waits for any answer from Mosquitto


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


# --- raw clients, and the TLS listener -----------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One listener of a running Mosquitto and how to reach it."""

    port: int
    tls: ssl.SSLContext | None = None

    @asynccontextmanager
    async def client(
        self,
        user: str | None,
        password: str | None = None,
        *,
        identifier: str | None = None,
        persistent: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> AsyncIterator[aiomqtt.Client]:
        """A raw MQTT 5 client, logged in as ``user`` with ``pw-<user>`` unless told."""
        properties = None
        if persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 300
        async with aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=user,
            password=password if password is not None or user is None else f"pw-{user}",
            identifier=identifier or user,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=not persistent,
            properties=properties,
            tls_context=tls or self.tls,
            timeout=RAW_CLIENT_TIMEOUT,
        ) as client:
            yield client


@dataclass(frozen=True)
class TlsBroker:
    """A Mosquitto with both listeners, and the CA its TLS listener's certificate is from."""

    plain: Endpoint
    tls: Endpoint
    certs: CertFiles


def start_tls_mosquitto(root: Path, certs: Path) -> tuple[MosquittoProcess, int, int]:
    """Mosquitto rendered from the project's config with TLS on, users as in ``mosquitto``."""
    port, tls_port = free_port(), free_port()
    files = render(root, port, tls=TlsListener(tls_port, certs))
    for name in ("vendor1", "buyer1", "mallory"):
        add_user(files, name, f"pw-{name}")
    process = MosquittoProcess(files, port)
    process.start()
    return process, port, tls_port


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[TlsBroker]:
    certs = CertFiles(tmp_path / "certs")
    make_certs(certs.directory)
    process, port, tls_port = start_tls_mosquitto(tmp_path / "mosquitto", certs.directory)
    try:
        yield TlsBroker(Endpoint(port), Endpoint(tls_port, tls_context(str(certs.ca_cert))), certs)
    finally:
        process.stop()
