"""The broker daemon's admin socket, both ends: one request line in, one answer line out.

A Unix socket of mode 0600 in the data directory: only the broker's own user reaches it.
Lines are bounded by the stream reader's limit; a longer one is refused, not read.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from agents.daemons.operator_protocol import (
    Asks,
    GrantedT,
    Refused,
    Run,
    answer_line,
    decode_answer,
    encode,
)


async def serve_admin(path: Path, run: Run) -> asyncio.Server:
    """Listen on a fresh socket at ``path``; each connection asks one request of ``run``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
        except (ValueError, ConnectionError) as exc:
            reply = encode(Refused(error=str(exc)))
        else:
            reply = await answer_line(line, run)
        writer.write(reply)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    path.unlink(missing_ok=True)  # noqa: ASYNC240 - once, before serving
    server = await asyncio.start_unix_server(answer, path=str(path))
    path.chmod(0o600)  # noqa: ASYNC240
    return server


async def exchange(socket_path: Path, line: bytes) -> bytes | None:
    """Send one line to a running daemon, return its answer; ``None`` when none listens."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    try:
        writer.write(line)
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def send_admin_request(
    socket_path: Path, request: Asks[GrantedT]
) -> GrantedT | Refused | None:
    """Ask a running daemon; ``None`` when no daemon listens on the socket."""
    reply = await exchange(socket_path, encode(request))
    return None if reply is None else decode_answer(reply, request.answer)
