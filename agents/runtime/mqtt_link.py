"""What every MQTT client behind the seam shares: settings, errors, limits, TLS.

Two clients implement ``MqttLink`` (``agents.runtime.mqtt``): the in-house one on the
``mqtt5`` codec (the default) and aiomqtt 2.x. Both raise ``LinkError`` for a connection
that failed or dropped (retried with backoff) and ``MqttRefusedError`` for credentials the
server refused (not retried).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final, Literal

from agents.runtime.supervision import AgentFailedError
from protocol.envelope import DEFAULT_MAX_MESSAGE_SIZE

ClientName = Literal["mqtt5", "aiomqtt"]
CLIENTS: Final[tuple[ClientName, ...]] = ("mqtt5", "aiomqtt")

SESSION_EXPIRY: Final = 86_400  # seconds the broker keeps our subscriptions and QoS 1 backlog
RECEIVE_MAXIMUM: Final = 1024
"""Unacknowledged QoS 1 messages the server may send us: the bound on what we hold in memory."""
MAX_PACKET_SIZE: Final = DEFAULT_MAX_MESSAGE_SIZE + 1024
"""The largest packet we accept: the protocol's largest message plus topic and header room."""

REFUSALS: Final[dict[int, str]] = {
    0x84: "it does not speak MQTT 5",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorised (a wrong user name or password, or a new user before it reloaded)",
    0x8A: "this client is banned",
    0x8C: "bad authentication method",
}
"""CONNACK reason codes that say who we are is wrong: asking again cannot help.

Mosquitto 2 answers a wrong password with 0x87. Codes meaning "later" (server busy or
unavailable, connection rate exceeded) stay ordinary link errors, retried with backoff.
"""


def refusal_reason(code: int) -> str | None:
    """Why a CONNACK code means our identity is wrong, or None if it may pass with time."""
    return REFUSALS.get(code)


class LinkError(Exception):
    """The connection failed or dropped; the agent loop reconnects with backoff."""


class PacketTooLargeError(LinkError):
    """A message larger than the server (or we) allow; refused before it is sent."""


def check_packet_size(topic: str, payload: bytes, limit: int) -> None:
    """Refuse, before sending, a publish that would make a packet larger than ``limit``.

    The 16 bytes are the fixed header, the topic's length prefix and the packet id, with
    room for an empty property block.
    """
    if len(payload) + len(topic) + 16 > limit:
        raise PacketTooLargeError(
            f"a {len(payload)}-byte message to {topic} exceeds the maximum packet size"
            f" ({limit} bytes)"
        )


class PublishRefusedError(LinkError):
    """The server answered a publish with a failure reason code (ACL, retained guard)."""


class MqttRefusedError(AgentFailedError):
    """Mosquitto refused this client's credentials or authorisation.

    Not a ``LinkError``: the loop does not retry it, and it ends the agent (a daemon
    exits 1 with this line, a command fails at once) so the operator fixes the cause.
    """


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and as whom to connect, and with which client."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    tls_ca: str | None = None
    keepalive: int = 30
    clean: bool = False
    client: ClientName = "mqtt5"


def tls_context(ca_file: str) -> ssl.SSLContext:
    """Trust only ``ca_file`` (not the system's CAs), check the host name, TLS 1.2 or newer.

    Only the operator's CA: a certificate any public CA issued for the broker's name must
    not be enough to stand in for the broker.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context
