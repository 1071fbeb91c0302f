"""Operator actions on a broker directory: through the running daemon, or on the ledger.

When no daemon listens on the admin socket, the same request line is answered by the
same code the daemon runs, on a service opened just for it (holding the directory's
lock, so never beside a daemon), so both paths agree.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from pathlib import Path
from typing import Final

from agents.daemons.admin_socket import send_admin_request
from agents.daemons.broker_files import BrokerFiles, BrokerSetupError, read_public
from agents.daemons.broker_key_files import load_broker_keys
from agents.daemons.broker_service import BrokerService
from agents.daemons.operator_actions import run_admin_request
from agents.daemons.operator_protocol import (
    Asks,
    GrantedT,
    Refused,
    Status,
    answer_line,
    decode_answer,
    encode,
)
from agents.runtime.datadir_lock import DataDirBusyError, DataDirLock
from agents.runtime.private_files import check_private_dir
from broker_ledger.store import EventStore

log = logging.getLogger("micropay.broker")
STARTING_DAEMON_WAIT: Final = 5.0
"""Seconds an operator command waits for a daemon that holds the directory to answer."""


async def operator_request(
    directory: Path, request: Asks[GrantedT], wait: float = STARTING_DAEMON_WAIT
) -> GrantedT | Refused:
    """Through the running daemon if there is one, else directly on the ledger."""
    answer, _ = await ask(directory, request, wait)
    return answer


async def ask(
    directory: Path, request: Asks[GrantedT], wait: float = STARTING_DAEMON_WAIT
) -> tuple[GrantedT | Refused, bool]:
    """The answer, and whether the running daemon gave it (not the ledger, offline).

    A process that holds the directory without answering on the socket is a daemon
    still starting (replaying its ledger) or another offline command: asked again for
    up to ``wait`` seconds, then ``DataDirBusyError``. Nothing writes the ledger behind
    the daemon's back.
    """
    files = BrokerFiles(directory)
    deadline = time.monotonic() + wait
    while True:
        answer = await send_admin_request(files.admin, request)
        if answer is not None:
            return answer, True
        try:
            service = await BrokerService.open(directory)
            break
        except DataDirBusyError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.1)
    try:
        reply = await answer_line(encode(request), functools.partial(run_admin_request, service))
    finally:
        await service.close()
    return decode_answer(reply, request.answer), False


async def sign_unsigned_tail(directory: Path, through: int) -> tuple[int, int]:
    """After an audit, sign the head over events no signature covers (the daemon stopped).

    Returns (first event signed now, last). For a ledger of an earlier version that
    stopped uncleanly; a healthy ledger has nothing to sign.
    """
    files = BrokerFiles(directory)
    if await send_admin_request(files.admin, Status()) is not None:
        raise BrokerSetupError("the broker daemon is running on this directory: stop it first")
    if not files.key.exists():
        raise BrokerSetupError(f"{directory} has no broker keys")
    check_private_dir(directory)
    identity = load_broker_keys(files)
    info = read_public(files.public)
    with DataDirLock.acquire(directory, "broker command"):
        store = await EventStore.open(files.ledger, info.id, signer=identity, unsigned_tail=True)
        try:
            first = store.unsigned_from
            signed = await store.sign_tail(through)
        finally:
            await store.close()
    log.warning("signed ledger head %s over unsigned events %s..%s", signed.seq, first, signed.seq)
    return first, signed.seq
