"""A scripted MQTT 5 server over a real socket, for what Mosquitto never sends.

Each connection runs ``script(peer)``: the script reads the client's packets with
``peer.packet()`` and writes whatever bytes it likes (malformed packets, answers out of
turn, or nothing at all). The client under test connects to it as to Mosquitto.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

import mqtt5

from agents.runtime.mqtt import MqttSettings


class Peer:
    """One connection from the client under test, seen from the server's side."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def packet(self) -> mqtt5.Packet:
        """The client's next packet (``IncompleteReadError`` once it has closed)."""
        head = await self.reader.readexactly(1)
        length, shift = 0, 0
        while True:
            byte = (await self.reader.readexactly(1))[0]
            head += bytes([byte])
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        packet, _used = mqtt5.read(memoryview(head + await self.reader.readexactly(length)))
        return packet

    async def accept(self, **connack: Any) -> mqtt5.ConnectPacket:
        """Read the CONNECT and answer it with a CONNACK (``connack``: its properties)."""
        connect = await self.packet()
        assert isinstance(connect, mqtt5.ConnectPacket), connect
        self.send(mqtt5.ConnAckPacket(**connack).write())
        return connect

    def send(self, *data: bytes) -> None:
        """Write bytes to the client, packets or not."""
        self.writer.write(b"".join(data))

    async def answer_pings(self) -> None:
        """Read on, answering PINGREQ (a live server) and nothing else, until the client leaves."""
        while True:
            try:
                packet = await self.packet()
            except asyncio.IncompleteReadError:
                return
            if isinstance(packet, mqtt5.PingReqPacket):
                self.send(mqtt5.PingRespPacket().write())


Script = Callable[[Peer], Awaitable[None]]


class HostileServer:
    """Listens on a free port of 127.0.0.1 and runs ``script`` for each connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def settings(self) -> MqttSettings:
        """Settings that make a link connect here."""
        return MqttSettings(port=self.port, username="victim", password="pw-victim")  # noqa: S106

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.script(Peer(reader, writer))
        except (asyncio.CancelledError, asyncio.IncompleteReadError, ConnectionError):
            pass  # the test is over, or the client left: both end the script
        finally:
            writer.transport.abort()
            self._tasks.discard(task)
