"""Retained-message flooding, and the Mosquitto plugin that stops it.

The acl_file lets mallory write ``micropay/v1/in/<anyone>/mallory``, retained or not, so
without more she can leave a retained message under every made-up recipient name, each
kept by Mosquitto for good. ``contrib/mosquitto/micropay_retain_guard.c`` refuses
retained publishes (and retained Wills) outside ``micropay/v1/pub/+/+`` and leaves
everything else to the acl_file. These tests run a real Mosquitto with and without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agents.ops import retain_guard
from agents.ops.mosquitto import MosquittoFiles, MosquittoProcess, add_user, free_port, render
from tests.agents.harness import wait_until

USERS = ("mallory", "victim", "vendor1", "observer")
NOT_AUTHORIZED = 135  # MQTT 5 PUBACK reason code
REFUSAL = "micropay_retain_guard: denied retained PUBLISH from mallory to "


@dataclass
class Broker:
    files: MosquittoFiles
    process: MosquittoProcess
    port: int

    def log(self) -> str:
        return self.process.log.read_text()


@contextlib.contextmanager
def running_broker(directory: Path, *, guard: bool) -> Iterator[Broker]:
    port = free_port()
    files = render(directory, port, retain_guard=guard)
    for name in USERS:
        add_user(files, name, f"pw-{name}")
    # observer reads every inbox: it sees whatever is retained in any of them.
    with files.acl.open("a") as acl:
        acl.write("\nuser observer\ntopic read micropay/v1/#\n")
    process = MosquittoProcess(files, port)
    process.start()
    try:
        yield Broker(files, process, port)
    finally:
        process.stop()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto as ``micropay mqtt render`` configures it (the guard is on by default)."""
    with running_broker(tmp_path / "mosquitto", guard=True) as broker:
        yield broker


@pytest.fixture
def unguarded(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path / "mosquitto", guard=False) as broker:
        yield broker


@asynccontextmanager
async def connect(
    broker: Broker, user: str, will: aiomqtt.Will | None = None
) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=user,
        password=f"pw-{user}",
        identifier=user,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
        will=will,
    ) as client:
        yield client


def record_pubacks(client: aiomqtt.Client) -> dict[int, ReasonCode]:
    """The reason code of every PUBACK ``client`` receives, by message id.

    aiomqtt completes ``publish`` whatever the PUBACK says (a refused QoS 1 publish does
    not raise), so the code is read from paho's callback, then passed on to aiomqtt's.
    """
    codes: dict[int, ReasonCode] = {}
    forward = client._on_publish

    def on_publish(
        paho: mqtt.Client, userdata: Any, mid: int, code: ReasonCode, props: Properties
    ) -> None:
        codes[mid] = code
        forward(paho, userdata, mid, code, props)

    client._client.on_publish = on_publish
    return codes


def verdicts(codes: dict[int, ReasonCode]) -> list[int | str]:
    """ "ok" for an accepted publish (0 or 16, "no matching subscribers"), else the code."""
    return [code.value if code.is_failure else "ok" for code in codes.values()]


async def until_marker(client: aiomqtt.Client, marker: str) -> list[aiomqtt.Message]:
    """Everything ``client`` receives before a message on ``marker`` (which it sends).

    Mosquitto sends retained messages right after the SUBACK, before anything published
    later: once the marker is back, every retained message would have arrived.
    """
    await client.publish(marker, b"marker", qos=1)
    received: list[aiomqtt.Message] = []
    async with asyncio.timeout(5):
        async for message in client.messages:
            if str(message.topic) == marker:
                return received
            received.append(message)
    raise AssertionError("unreachable")  # the iterator never ends on its own


async def retained_inbox_messages(broker: Broker) -> list[aiomqtt.Message]:
    """The retained messages in any inbox, as a new subscriber gets them."""
    async with connect(broker, "observer") as observer:
        await observer.subscribe("micropay/v1/in/#", qos=1)
        # observer may not write; its marker goes through victim's own inbox.
        async with connect(broker, "victim") as victim:
            await victim.publish("micropay/v1/in/victim/victim", b"marker", qos=1)
        received: list[aiomqtt.Message] = []
        async with asyncio.timeout(5):
            async for message in observer.messages:
                if str(message.topic) == "micropay/v1/in/victim/victim":
                    return received
                received.append(message)
    raise AssertionError("unreachable")


def made_up_recipients(count: int) -> list[str]:
    return ["victim", *(f"nobody-{i:04d}" for i in range(1, count))]


@pytest.mark.asyncio
async def test_without_the_guard_any_user_retains_messages_for_made_up_recipients(
    unguarded: Broker,
) -> None:
    async with connect(unguarded, "mallory") as mallory:
        codes = record_pubacks(mallory)
        for name in made_up_recipients(20):
            await mallory.publish(f"micropay/v1/in/{name}/mallory", b"junk", qos=1, retain=True)
    assert verdicts(codes) == ["ok"] * 20
    retained = await retained_inbox_messages(unguarded)
    assert len(retained) == 20
    assert all(message.retain for message in retained)


@pytest.mark.asyncio
async def test_the_guard_refuses_retained_publishes_into_inboxes(guarded: Broker) -> None:
    recipients = made_up_recipients(300)
    async with connect(guarded, "mallory") as mallory:
        codes = record_pubacks(mallory)
        for name in recipients:
            await mallory.publish(f"micropay/v1/in/{name}/mallory", b"junk", qos=1, retain=True)
        acknowledged = dict(codes)
        # QoS 0 has no PUBACK to refuse with: the message is dropped just the same.
        await mallory.publish("micropay/v1/in/nobody-qos0/mallory", b"junk", qos=0, retain=True)
    assert verdicts(acknowledged) == [NOT_AUTHORIZED] * len(recipients)
    assert {str(code) for code in acknowledged.values()} == {"Not authorized"}

    assert await retained_inbox_messages(guarded) == []
    async with connect(guarded, "victim") as victim:
        await victim.subscribe("micropay/v1/in/victim/#", qos=1)
        assert await until_marker(victim, "micropay/v1/in/victim/victim") == []

    log = guarded.log()
    assert f"{REFUSAL}'micropay/v1/in/victim/mallory'" in log
    assert f"{REFUSAL}'micropay/v1/in/nobody-0001/mallory'" in log
    assert log.count(REFUSAL) == len(recipients) + 1


@pytest.mark.asyncio
async def test_the_guard_leaves_non_retained_messages_alone(guarded: Broker) -> None:
    async with connect(guarded, "victim") as victim:
        await victim.subscribe("micropay/v1/in/victim/#", qos=1)
        async with connect(guarded, "mallory") as mallory:
            codes = record_pubacks(mallory)
            await mallory.publish("micropay/v1/in/victim/mallory", b"payment", qos=1)
        (message,) = await until_marker(victim, "micropay/v1/in/victim/victim")
    assert verdicts(codes) == ["ok"]
    assert str(message.topic) == "micropay/v1/in/victim/mallory"
    assert message.payload == b"payment"
    assert not message.retain
    assert REFUSAL not in guarded.log()


@pytest.mark.asyncio
async def test_retained_broadcasts_are_kept_and_the_acl_file_still_decides(
    guarded: Broker,
) -> None:
    async with connect(guarded, "vendor1") as vendor:
        codes = record_pubacks(vendor)
        await vendor.publish("micropay/v1/pub/vendor1/offer", b"offer", qos=1, retain=True)
        # The guard retains only two levels below pub: a deeper retained topic is refused...
        await vendor.publish("micropay/v1/pub/vendor1/offer/x", b"deep", qos=1, retain=True)
        # ...and the acl_file lets a user write only the four retained kinds under its name,
        # so made-up kinds are refused, retained or not: at most 4 retained per user.
        await vendor.publish("micropay/v1/pub/vendor1/offer/x", b"deep", qos=1)
        for kind in ("junk-1", "junk-2"):
            await vendor.publish(f"micropay/v1/pub/vendor1/{kind}", b"x" * 1000, retain=True, qos=1)
    assert verdicts(codes) == ["ok", NOT_AUTHORIZED, NOT_AUTHORIZED, NOT_AUTHORIZED, NOT_AUTHORIZED]

    # mallory may not write vendor1's topics: the guard defers, the acl_file refuses.
    async with connect(guarded, "mallory") as mallory:
        refused = record_pubacks(mallory)
        await mallory.publish("micropay/v1/pub/vendor1/offer", b"fake", qos=1, retain=True)
    assert verdicts(refused) == [NOT_AUTHORIZED]
    assert REFUSAL not in guarded.log()

    async with connect(guarded, "victim") as later:
        await later.subscribe("micropay/v1/pub/#", qos=1)
        await later.subscribe("micropay/v1/in/victim/victim", qos=1)  # for the marker
        (offer,) = await until_marker(later, "micropay/v1/in/victim/victim")
    assert str(offer.topic) == "micropay/v1/pub/vendor1/offer"
    assert offer.payload == b"offer"
    assert offer.retain


async def die_with_will(client: aiomqtt.Client, how: str) -> None:
    """End ``client``'s connection so that Mosquitto publishes its Will."""
    if how == "disconnect-with-will":  # MQTT 5 DISCONNECT, reason 4: anyone may send it
        client._client.disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=4))
    else:  # the connection drops without a DISCONNECT, as a crash would
        sock = client._client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(aiomqtt.MqttError):
        await asyncio.wait_for(client._disconnected, 5)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["disconnect-with-will", "connection-lost"])
@pytest.mark.parametrize("retain", [True, False], ids=["retained", "not-retained"])
async def test_a_retained_will_into_an_inbox_is_dropped(
    guarded: Broker, how: str, retain: bool
) -> None:
    will = aiomqtt.Will("micropay/v1/in/victim/mallory", b"last words", qos=1, retain=retain)
    async with connect(guarded, "victim") as victim:
        await victim.subscribe("micropay/v1/in/victim/#", qos=1)
        async with connect(guarded, "mallory", will=will) as mallory:
            await die_with_will(mallory, how)
        refusal = f"{REFUSAL}'micropay/v1/in/victim/mallory'"
        if retain:
            # Wills are checked like publishes (MOSQ_ACL_WRITE, with their retain flag):
            # the refused Will is dropped entirely, not even delivered live.
            await wait_until(lambda: refusal in guarded.log())
            assert await until_marker(victim, "micropay/v1/in/victim/victim") == []
        else:
            # A dropped connection may reach Mosquitto after victim's marker: ask again.
            received: list[aiomqtt.Message] = []
            async with asyncio.timeout(5):
                while not received:
                    received = await until_marker(victim, "micropay/v1/in/victim/victim")
            assert [m.payload for m in received] == [b"last words"]
            assert not received[0].retain
    assert await retained_inbox_messages(guarded) == []
    assert (refusal in guarded.log()) == retain


@pytest.mark.asyncio
async def test_the_guard_still_comes_first_after_a_reload(guarded: Broker) -> None:
    # SIGHUP re-reads the acl_file and registers its check again (last, after ours);
    # the plugin itself is not reloaded. A new user proves the reload has happened.
    add_user(guarded.files, "reloaded", "pw-reloaded")
    guarded.process.reload()
    async with asyncio.timeout(10):
        while True:
            try:
                async with connect(guarded, "reloaded"):
                    break
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)
    async with connect(guarded, "mallory") as mallory:
        codes = record_pubacks(mallory)
        await mallory.publish("micropay/v1/in/victim/mallory", b"junk", qos=1, retain=True)
        await mallory.publish("micropay/v1/in/victim/mallory", b"fine", qos=1)
    assert verdicts(codes) == [NOT_AUTHORIZED, "ok"]
    assert await retained_inbox_messages(guarded) == []


def test_build_is_cached_private_and_atomic(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(retain_guard.build(out))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    library = retain_guard.plugin_path(out)
    assert results == [library] * 4
    assert library.read_bytes()[:4] == b"\x7fELF"
    assert sorted(p.name for p in out.iterdir()) == [library.name]  # no temporary left
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700

    built = library.stat().st_mtime_ns
    assert retain_guard.build(out) == library
    assert library.stat().st_mtime_ns == built  # up to date: not compiled again

    source_time = retain_guard.SOURCE.stat().st_mtime_ns
    os.utime(library, ns=(source_time - 10**9, source_time - 10**9))  # older than source
    retain_guard.build(out)
    assert library.stat().st_mtime_ns >= source_time


def test_build_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(retain_guard.RetainGuardError, match="apt-get install gcc mosquitto-dev"):
        retain_guard.build(tmp_path / "out")

    # A compiler without the Mosquitto headers (this one only says so).
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "cc"
    fake.write_text(
        "#!/bin/sh\necho 'fatal error: mosquitto_broker.h: No such file or directory' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    with pytest.raises(retain_guard.RetainGuardError) as raised:
        retain_guard.build(tmp_path / "out")
    assert str(raised.value) == (
        "Mosquitto plugin headers are missing: apt-get install gcc mosquitto-dev libmosquitto-dev"
    )
    assert not retain_guard.plugin_path(tmp_path / "out").exists()
    assert list((tmp_path / "out").iterdir()) == []
