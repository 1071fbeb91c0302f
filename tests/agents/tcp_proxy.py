"""A TCP proxy between an MQTT client and Mosquitto that can play dead or cut the line.

Real sockets both sides: the client under test connects to the proxy as to a broker.
``swallow`` makes the proxy read and discard what one direction (or both) carries, the
way a dead peer or a lost route looks to TCP: no reset, no FIN, just silence. ``cut``
resets every connection at once, as a crashed host or a NAT that forgot the flow.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Literal, Self

Direction = Literal["up", "down"]  # up: client to server; down: server to client
CHUNK = 65_536


class Proxy:
    """Forwards ``listen_host:port`` to ``127.0.0.1:target``; ``async with`` runs it."""

    def __init__(self, target: int, listen_host: str = "127.0.0.1") -> None:
        self.target = target
        self.listen_host = listen_host
        self.port = 0
        self.forwarding: dict[Direction, bool] = {"up": True, "down": True}
        self.swallowed: dict[Direction, int] = {"up": 0, "down": 0}
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.listen_host, 0)
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
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def swallow(self, *directions: Direction) -> None:
        """Discard what these directions carry from now on (both if none is named)."""
        for direction in directions or ("up", "down"):
            self.forwarding[direction] = False

    def forward(self) -> None:
        """Forward both directions again (for connections made from now on, and live ones)."""
        self.forwarding = {"up": True, "down": True}

    def cut(self) -> None:
        """Reset every connection through the proxy, both sides, at once."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_out.transport.abort()
            return
        self._writers |= {client_out, server_out}
        for pump in (
            self._pump(client_in, server_out, "up"),
            self._pump(server_in, client_out, "down"),
        ):
            task = asyncio.create_task(pump)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, direction: Direction
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(CHUNK):
                if self.forwarding[direction]:
                    sink.write(data)
                    await sink.drain()
                else:
                    self.swallowed[direction] += len(data)
            if self.forwarding[direction]:  # a dead peer sends no FIN either
                sink.close()
                self._writers.discard(sink)
