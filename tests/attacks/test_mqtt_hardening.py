"""Mosquitto's own defences, attacked with a raw MQTT client: ACL, client ids, logins, TLS.

The protocol's MACs would catch a forged or replayed message anyway; these tests show the
broker configuration stops the attacker earlier, and that a client connecting over TLS
talks to the real broker or to nobody.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import socket
import ssl
import struct
import threading
import warnings
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agents.ops.tls_certs import CertError, CertFiles, make_certs
from agents.runtime.mqtt import MqttSettings, open_link, tls_context
from protocol import topics
from tests.agents.conftest import Broker, Endpoint, TlsBroker, start_tls_mosquitto

WAIT = 2.0  # seconds: a bound on waiting for a message, never a fixed sleep


async def next_messages(client: aiomqtt.Client, until: str) -> list[tuple[str, bytes]]:
    """Every message received up to and including one on topic ``until``.

    Mosquitto forwards one client's publications in order, so a sentinel published after
    the message under test proves the client would already have seen it: no sleeping.
    """
    received: list[tuple[str, bytes]] = []
    async with asyncio.timeout(WAIT):
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            received.append((message.topic.value, payload))
            if message.topic.value == until:
                return received
    raise AssertionError("the connection closed")  # pragma: no cover


# --- the ACL -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_client_cannot_read_another_clients_inbox(mosquitto: Broker) -> None:
    plain = Endpoint(mosquitto.port)
    secret = topics.inbox("vendor1", "buyer1")
    sentinel = topics.inbox("mallory", "buyer1")
    async with plain.client("vendor1") as vendor1, plain.client("mallory") as mallory:
        await vendor1.subscribe(topics.inbox_filter("vendor1"), qos=1)
        for wide in ("micropay/v1/in/vendor1/#", "micropay/v1/in/#", "#"):
            await mallory.subscribe(wide, qos=1)
        await mallory.subscribe(topics.inbox_filter("mallory"), qos=1)  # for the sentinel
        async with plain.client("buyer1") as buyer1:
            await buyer1.publish(secret, b"for vendor1 only", qos=1)
            await buyer1.publish(sentinel, b"sentinel", qos=1)

        assert await next_messages(vendor1, until=secret) == [(secret, b"for vendor1 only")]
        assert await next_messages(mallory, until=sentinel) == [(sentinel, b"sentinel")]


# --- client ids ----------------------------------------------------------------------------


async def assert_no_takeover(endpoint: Endpoint) -> None:
    """Mallory connects with vendor1's client id: vendor1 stays connected and served."""
    inbox = topics.inbox("vendor1", "buyer1")
    sentinel = topics.inbox("mallory", "buyer1")
    async with endpoint.client("vendor1") as vendor1:
        await vendor1.subscribe(topics.inbox_filter("vendor1"), qos=1)
        # Were the id taken as given, Mosquitto would now disconnect vendor1 (0x8E).
        async with endpoint.client("mallory", identifier="vendor1") as mallory:
            await mallory.subscribe(topics.inbox_filter("mallory"), qos=1)
            async with endpoint.client("buyer1") as buyer1:
                await buyer1.publish(inbox, b"still yours", qos=1)
                await buyer1.publish(sentinel, b"sentinel", qos=1)
            assert await next_messages(vendor1, until=inbox) == [(inbox, b"still yours")]
            assert await next_messages(mallory, until=sentinel) == [(sentinel, b"sentinel")]
        # vendor1's connection is still the one Mosquitto serves.
        await vendor1.publish(topics.inbox("buyer1", "vendor1"), b"alive", qos=1)


@pytest.mark.asyncio
async def test_client_cannot_take_over_another_clients_id(mosquitto: Broker) -> None:
    await assert_no_takeover(Endpoint(mosquitto.port))


@pytest.mark.asyncio
async def test_client_cannot_resume_another_clients_persistent_session(
    mosquitto: Broker,
) -> None:
    plain = Endpoint(mosquitto.port)
    inbox = topics.inbox("vendor1", "buyer1")
    sentinel = topics.inbox("mallory", "buyer1")
    async with plain.client("vendor1", persistent=True) as vendor1:
        await vendor1.subscribe(topics.inbox_filter("vendor1"), qos=1)
    async with plain.client("buyer1") as buyer1:  # queued for vendor1 while it is away
        await buyer1.publish(inbox, b"queued for vendor1", qos=1)

    async with plain.client("mallory", identifier="vendor1", persistent=True) as mallory:
        await mallory.subscribe(topics.inbox_filter("mallory"), qos=1)
        async with plain.client("buyer1") as buyer1:
            await buyer1.publish(sentinel, b"sentinel", qos=1)
        assert await next_messages(mallory, until=sentinel) == [(sentinel, b"sentinel")]

    async with plain.client("vendor1", persistent=True) as vendor1:
        assert await next_messages(vendor1, until=inbox) == [(inbox, b"queued for vendor1")]


# --- logging in ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("user", "password"),
    [(None, None), ("buyer1", "pw-wrong"), ("buyer1", ""), ("eve", "pw-eve")],
    ids=["anonymous", "wrong-password", "empty-password", "unknown-user"],
)
async def test_anonymous_and_wrong_password_connections_are_refused(
    mosquitto: Broker, user: str | None, password: str | None
) -> None:
    with pytest.raises(aiomqtt.MqttCodeError) as refused:
        async with Endpoint(mosquitto.port).client(user, password, identifier="someone"):
            pass  # pragma: no cover
    # MQTT 5 reason codes 0x86 "bad user name or password", 0x87 "not authorized".
    code = refused.value.rc
    assert (code.value if isinstance(code, ReasonCode) else code) in {0x86, 0x87}


# --- flood limits --------------------------------------------------------------------------


def test_mqtt5_clients_are_told_the_flood_limits(mosquitto: Broker) -> None:
    # Mosquitto announces in CONNACK what it enforces: QoS 2 publishers and oversized
    # packets are disconnected, keepalives are capped, unacknowledged messages bounded.
    connected = threading.Event()
    announced: dict[str, int] = {}

    def on_connect(
        _client: paho.Client,
        _userdata: object,
        _flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        assert not reason.is_failure
        assert properties is not None
        announced.update(properties.json())  # type: ignore[no-untyped-call]
        connected.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, "vendor1", protocol=paho.MQTTv5)
    client.username_pw_set("vendor1", "pw-vendor1")
    client.on_connect = on_connect
    client.connect("127.0.0.1", mosquitto.port, keepalive=3600)
    client.loop_start()
    try:
        assert connected.wait(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()
    assert announced["MaximumQoS"] == 1
    assert announced["MaximumPacketSize"] == 131072
    assert announced["ServerKeepAlive"] == 120
    assert announced["ReceiveMaximum"] == 100


# --- TLS -----------------------------------------------------------------------------------


async def assert_handshake_refused(endpoint: Endpoint, tls: ssl.SSLContext | None = None) -> None:
    """Connecting fails in the TLS handshake, on the server's certificate.

    paho leaves the socket of a failed handshake to the garbage collector, which warns
    about it; collect it here, once the loop has let go of the error, so no later test
    is blamed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            async with endpoint.client("vendor1", tls=tls):
                pytest.fail("the TLS handshake succeeded")
        except aiomqtt.MqttError as error:
            message = str(error)
        await asyncio.sleep(0)  # the executor's wake-up call still holds the traceback
        gc.collect()
    assert "certificate verify failed" in message


def test_certs_keep_the_ca_and_let_only_the_owner_read_keys(tmp_path: Path) -> None:
    certs = CertFiles(tmp_path / "certs")
    first = make_certs(certs.directory, hosts=["mq.example.org", "192.0.2.10"])
    assert certs.ca_key in first.written
    for key in (certs.ca_key, certs.server_key):
        assert key.stat().st_mode & 0o777 == 0o600
    server = x509.load_pem_x509_certificate(certs.server_cert.read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(name.value) for name in names] == [
        "localhost",
        "127.0.0.1",
        "mq.example.org",
        "192.0.2.10",
    ]

    ca = certs.ca_cert.read_bytes()
    again = make_certs(certs.directory, clients=["sensor-7"])
    assert certs.ca_cert.read_bytes() == ca  # certificates issued earlier stay valid
    assert {certs.ca_key, certs.server_cert} <= set(again.kept)
    assert certs.client_key("sensor-7").stat().st_mode & 0o777 == 0o600
    with pytest.raises(CertError, match="expires"):
        make_certs(certs.directory, days=100_000)
    with pytest.raises(CertError, match="neither"):
        make_certs(certs.directory, hosts=["mq example"])
    with pytest.raises(CertError, match="client name"):
        make_certs(certs.directory, clients=["../ca"])
    make_certs(certs.directory, force=True)
    assert certs.ca_cert.read_bytes() != ca


@pytest.mark.asyncio
async def test_tls_client_trusting_the_ca_connects_and_exchanges_a_message(
    tls_mosquitto: TlsBroker,
) -> None:
    # The agents' own connection code, with --mqtt-tls-ca.
    def settings(user: str) -> MqttSettings:
        return MqttSettings(
            port=tls_mosquitto.tls.port,
            username=user,
            password=f"pw-{user}",
            tls_ca=str(tls_mosquitto.certs.ca_cert),
            clean=True,
        )

    inbox = topics.inbox("vendor1", "buyer1")
    async with open_link(settings("vendor1")) as vendor1:
        await vendor1.subscribe([topics.inbox_filter("vendor1")])
        async with open_link(settings("buyer1")) as buyer1:
            await buyer1.publish(inbox, b"over TLS")
        async with asyncio.timeout(WAIT):
            received = await anext(aiter(vendor1.messages()))
    assert received == (inbox, b"over TLS")


@pytest.mark.asyncio
async def test_client_trusting_another_ca_fails_the_handshake(
    tmp_path: Path, tls_mosquitto: TlsBroker
) -> None:
    other = CertFiles(tmp_path / "mallory-ca")
    make_certs(other.directory)
    await assert_handshake_refused(tls_mosquitto.tls, tls_context(str(other.ca_cert)))


@pytest.mark.asyncio
async def test_tls_client_refuses_an_impostor_broker_with_another_cas_certificate(
    tmp_path: Path, tls_mosquitto: TlsBroker
) -> None:
    # A man in the middle: a real Mosquitto with a certificate for 127.0.0.1 from his own CA.
    mallory = CertFiles(tmp_path / "mallory-ca")
    make_certs(mallory.directory)
    process, _, tls_port = start_tls_mosquitto(tmp_path / "mallory-mq", mallory.directory)
    try:
        await assert_handshake_refused(Endpoint(tls_port, tls_mosquitto.tls.tls))
    finally:
        process.stop()


@pytest.mark.asyncio
async def test_client_certificate_from_the_same_ca_cannot_pose_as_the_broker(
    tmp_path: Path, tls_mosquitto: TlsBroker
) -> None:
    # Mallory holds a client certificate from the operator's CA and serves it as a broker.
    issued = make_certs(tls_mosquitto.certs.directory, clients=["mallory"])
    assert tls_mosquitto.certs.server_cert in issued.kept
    rogue = CertFiles(tmp_path / "rogue-certs")
    rogue.directory.mkdir()
    shutil.copy(tls_mosquitto.certs.ca_cert, rogue.ca_cert)
    shutil.copy(tls_mosquitto.certs.client_cert("mallory"), rogue.server_cert)
    shutil.copy(tls_mosquitto.certs.client_key("mallory"), rogue.server_key)
    process, _, tls_port = start_tls_mosquitto(tmp_path / "rogue-mq", rogue.directory)
    try:
        await assert_handshake_refused(Endpoint(tls_port, tls_mosquitto.tls.tls))
    finally:
        process.stop()


def mqtt_connect_packet(user: str, password: str) -> bytes:
    """An MQTT 5 CONNECT with user name and password, as a plain-TCP client sends it."""

    def text(value: str) -> bytes:
        return struct.pack(">H", len(value)) + value.encode()

    flags = 0x80 | 0x40 | 0x02  # user name, password, clean start
    body = text("MQTT") + bytes([5, flags]) + struct.pack(">H", 30) + b"\x00"
    body += text(user) + text(user) + text(password)
    assert len(body) < 128  # one-byte remaining length
    return bytes([0x10, len(body)]) + body


def test_plain_tcp_client_on_the_tls_port_fails(tls_mosquitto: TlsBroker) -> None:
    # A plain CONNECT is not a TLS ClientHello: the listener drops the connection without
    # a CONNACK, so a client that forgot TLS cannot log in there (nor fall back silently).
    received = b""
    with socket.create_connection(("127.0.0.1", tls_mosquitto.tls.port), timeout=WAIT) as sock:
        sock.sendall(mqtt_connect_packet("vendor1", "pw-vendor1"))
        try:
            while chunk := sock.recv(4096):  # until the listener closes (a timeout fails)
                received += chunk
        except ConnectionResetError:
            pass
    assert not received.startswith(b"\x20")  # no CONNACK


@pytest.mark.asyncio
async def test_tls_listener_also_ties_the_client_id_to_the_username(
    tls_mosquitto: TlsBroker,
) -> None:
    await assert_no_takeover(tls_mosquitto.tls)


@pytest.mark.asyncio
async def test_plain_listener_still_serves_local_agents_with_tls_on(
    tls_mosquitto: TlsBroker,
) -> None:
    inbox = topics.inbox("vendor1", "buyer1")
    async with tls_mosquitto.plain.client("vendor1") as vendor1:
        await vendor1.subscribe(topics.inbox_filter("vendor1"), qos=1)
        async with tls_mosquitto.tls.client("buyer1") as buyer1:
            await buyer1.publish(inbox, b"from a device", qos=1)
        assert await next_messages(vendor1, until=inbox) == [(inbox, b"from a device")]
