"""The MqttLink contract when the network misbehaves, against both clients on a real Mosquitto.

TLS that must fail closed, a peer that goes silent (keepalive), a publish in flight when
the connection drops, and (``Mqtt5Link`` only) many publishes in flight within the
server's Receive Maximum. Faults are made by a real TCP proxy (``tcp_proxy.Proxy``)
between the link and Mosquitto, never by mocking the network.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pytest

from agents.ops.tls_certs import CertFiles, make_certs
from agents.runtime.mqtt import (
    CLIENTS,
    ClientName,
    LinkError,
    MqttSettings,
    open_link,
)
from agents.runtime.mqtt5_link import Mqtt5Link
from tests.agents.conftest import Broker, TlsBroker
from tests.agents.harness import wait_until
from tests.agents.link_helpers import (
    FILTER,
    INBOX,
    SELF,
    SENTINEL,
    WAIT,
    dropped,
    numbered,
    payloads_until_sentinel,
    reading,
    settings,
    take,
)
from tests.agents.tcp_proxy import Proxy

pytestmark = pytest.mark.asyncio
each_client = pytest.mark.parametrize("client", CLIENTS)

# --- TLS -----------------------------------------------------------------------------------


def over_tls(broker: TlsBroker, user: str, client: ClientName, ca: Path) -> MqttSettings:
    return MqttSettings(
        port=broker.tls.port,
        username=user,
        password=f"pw-{user}",
        tls_ca=str(ca),
        client=client,
    )


async def handshake_error(settings: MqttSettings) -> LinkError:
    """The ``LinkError`` of a connection whose TLS handshake must fail, within ``WAIT``.

    paho leaves the socket of a failed handshake to the garbage collector, which warns
    about it: collect it here so no later test is blamed (as in test_mqtt_hardening).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(LinkError) as failed:
            async with asyncio.timeout(WAIT), open_link(settings):
                pytest.fail("the TLS handshake succeeded")
        await asyncio.sleep(0)  # the executor's wake-up call still holds the traceback
        gc.collect()
    return failed.value


@each_client
async def test_tls_with_the_ca_connects_and_exchanges_messages(
    tls_mosquitto: TlsBroker, client: ClientName
) -> None:
    vendor = over_tls(tls_mosquitto, "vendor1", client, tls_mosquitto.certs.ca_cert)
    async with open_link(vendor) as link, reading(link) as stream:
        await link.subscribe([FILTER])
        await link.publish(SELF, b"over TLS")
        assert await take(stream, 1) == [(SELF, b"over TLS")]


@each_client
async def test_tls_trusting_another_ca_fails_at_once(
    tmp_path: Path, tls_mosquitto: TlsBroker, client: ClientName
) -> None:
    other = CertFiles(tmp_path / "other-ca")
    make_certs(other.directory)
    error = await handshake_error(over_tls(tls_mosquitto, "vendor1", client, other.ca_cert))
    assert "certificate verify failed" in str(error)


@each_client
async def test_tls_to_a_name_the_certificate_does_not_cover_fails_at_once(
    tls_mosquitto: TlsBroker, client: ClientName
) -> None:
    # The certificate names localhost and 127.0.0.1; the same broker reached as 127.0.0.2
    # (a proxy there, for Mosquitto listens on 127.0.0.1 only) must not be trusted.
    async with Proxy(tls_mosquitto.tls.port, listen_host="127.0.0.2") as proxy:
        elsewhere = replace(
            over_tls(tls_mosquitto, "vendor1", client, tls_mosquitto.certs.ca_cert),
            host="127.0.0.2",
            port=proxy.port,
        )
        error = await handshake_error(elsewhere)
        assert proxy.connections == 1  # it did reach the broker, and refused its name
    assert "certificate verify failed" in str(error)
    assert "mismatch" in str(error)


# --- a dead peer ---------------------------------------------------------------------------

KEEPALIVE = 2


@each_client
async def test_a_silent_server_is_detected_by_keepalive(
    mosquitto: Broker, client: ClientName
) -> None:
    # The proxy keeps both TCP connections open and forwards nothing, FIN included: to the
    # link the server is simply gone, as behind a dead route. Nothing but keepalive tells.
    async with Proxy(mosquitto.port) as proxy:
        vendor = settings(mosquitto, "vendor1", client, port=proxy.port, keepalive=KEEPALIVE)
        async with open_link(vendor) as link:
            await link.subscribe([FILTER])
            proxy.swallow()
            started = time.monotonic()
            await dropped(link, within=5 * KEEPALIVE)
            waited = time.monotonic() - started
            with pytest.raises(LinkError):  # and it knows: no publishing into the void
                await link.publish(SELF, b"anyone?")
    assert proxy.swallowed["up"] > 0  # the link did ask (PINGREQ), and heard nothing
    # mqtt5 gives up after 1.5 keepalives of silence (3 s here), paho one keepalive after an
    # unanswered PINGREQ (4 s): both well within two keepalives and the seconds they tick.
    assert waited <= 2 * KEEPALIVE + 2


# --- a publish in flight when the connection drops -----------------------------------------

Lost = Literal["publish", "puback"]


@each_client
@pytest.mark.parametrize("lost", ["publish", "puback"])
async def test_a_publish_in_flight_across_a_reconnect(
    mosquitto: Broker, client: ClientName, lost: Lost
) -> None:
    # The proxy swallows the PUBLISH (Mosquitto never had it) or its PUBACK (Mosquitto
    # delivered it, we never heard), then the connection is cut. The same link reconnects.
    async with (
        Proxy(mosquitto.port) as proxy,
        open_link(settings(mosquitto, "vendor1", client)) as vendor,
        reading(vendor) as stream,
    ):
        await vendor.subscribe([FILTER])
        buyer = open_link(settings(mosquitto, "buyer1", client, port=proxy.port))
        async with buyer:
            proxy.swallow("up" if lost == "publish" else "down")
            sending = asyncio.create_task(buyer.publish(INBOX, b"in flight"))
            if lost == "puback":
                assert await take(stream, 1) == [(INBOX, b"in flight")]
            await wait_until(lambda: proxy.swallowed["up" if lost == "publish" else "down"] > 0)
            proxy.cut()
            await dropped(buyer)
        assert not sending.done()
        proxy.forward()
        async with buyer:
            if client == "mqtt5":
                # Resent with DUP on the resumed session: the publish completes.
                async with asyncio.timeout(WAIT):
                    await sending
            await buyer.publish(INBOX, SENTINEL)
            after = await payloads_until_sentinel(stream)
        if client == "mqtt5":
            assert after.count(b"in flight") >= 1  # at least once; twice if its PUBACK was lost
        else:
            # aiomqtt starts a new paho client per connection: what was in flight is not
            # resent, and the publish fails only at aiomqtt's own timeout (10 s).
            assert after == []
            with pytest.raises(LinkError, match="timed out"):
                async with asyncio.timeout(15):
                    await sending


# --- many publishes in flight (Mqtt5Link) --------------------------------------------------


async def test_publish_nowait_keeps_within_the_servers_receive_maximum(
    mosquitto: Broker,
) -> None:
    # Mosquitto announces max_inflight_messages (100) as its Receive Maximum; a publisher
    # wanting 1,500 in flight gets 100 at a time and is never disconnected for it.
    sent = numbered(1_500)
    async with (
        open_link(settings(mosquitto, "vendor1", "mqtt5")) as vendor,
        reading(vendor) as stream,
        Mqtt5Link(settings(mosquitto, "buyer1", "mqtt5")) as buyer,
    ):
        await vendor.subscribe([FILTER])
        receiving = asyncio.create_task(take(stream, len(sent), within=20))
        acks: list[asyncio.Future[None]] = []
        while buyer.has_room():
            acks.append(buyer.publish_nowait(INBOX, sent[len(acks)]))
        assert len(acks) == 100
        with pytest.raises(LinkError, match="Receive Maximum"):
            buyer.publish_nowait(INBOX, b"one too many")
        most = 0
        for payload in sent[len(acks) :]:
            await buyer.room()
            acks.append(buyer.publish_nowait(INBOX, payload))
            most = max(most, sum(not ack.done() for ack in acks))
        async with asyncio.timeout(WAIT):
            await asyncio.gather(*acks)
        assert most <= 100
        await buyer.publish(INBOX, b"still connected")
        assert await receiving == [(INBOX, payload) for payload in sent]
        assert await take(stream, 1) == [(INBOX, b"still connected")]
