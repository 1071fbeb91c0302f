"""An agent's key files across a rekey, and the broker key history it keeps.

A rekey makes the new keys first (``agent.key.next``), durable before the request
leaves; the broker's certificate for them is stored, then the new file replaces
``agent.key`` in one rename. An agent that stopped between the two finds the stored
certificate naming the pending keys and finishes the rename before it loads any key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any, Final

from agents.daemons.agent_store import AgentStore
from agents.runtime.keystore import create_successor, load_identity
from protocol.agent_endpoint import AgentEndpoint
from protocol.broker_books import certificate_of
from protocol.crypto import AgentKeys
from protocol.errors import RemoteProtocolError

log = logging.getLogger("micropay.keys")

KEY_FILE: Final = "agent.key"
NEXT_KEY_FILE: Final = "agent.key.next"
BROKER_KEYS: Final = "broker_keys"
"""The store's meta key of the broker's key history (``BrokerKeyAccepted.history``)."""


def pending_keys(directory: Path) -> AgentKeys:
    """The keys a rekey asks for: made now, or the ones an interrupted rekey left."""
    path = directory / NEXT_KEY_FILE
    return load_identity(path) if path.exists() else create_successor(directory / KEY_FILE, path)


def adopt_pending_keys(directory: Path) -> None:
    """The pending keys become the agent's own, in one rename.

    The old key file is replaced; what ``derive_secret`` starts from is carried over
    (``keystore.create_successor``), and a token keeps the old objects until its owner
    deletes them.
    """
    (directory / NEXT_KEY_FILE).replace(directory / KEY_FILE)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def settle_rekey(directory: Path, store_file: Path) -> bool:
    """Finish a rekey whose certificate was stored but whose key file was not renamed yet.

    Run before the keys are loaded and the store opened (which opens only for the keys
    its certificate names), so the certificate is read straight from the file, read-only;
    the caller holds the directory's lock, so nobody writes it meanwhile.
    """
    pending = directory / NEXT_KEY_FILE
    if not pending.exists() or not store_file.exists():
        return False
    with contextlib.closing(
        sqlite3.connect(f"{store_file.resolve().as_uri()}?mode=ro", uri=True)
    ) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'certificate'").fetchone()
    if row is None:
        return False
    certificate = certificate_of(bytes(row[0]))
    keys = load_identity(pending)
    if (certificate.sign_key, certificate.agree_key) != (keys.sign_key, keys.agree_key):
        log.warning(  # still waiting for the broker: its answer may have been lost
            "a key rotation is pending (%s): run `micropay keys rotate` again to finish it",
            pending,
        )
        return False
    adopt_pending_keys(directory)
    log.warning("finished a key rotation: certificate %s is this agent's", certificate.serial)
    return True


async def restore_broker_keys(core: AgentEndpoint[Any], store: AgentStore) -> None:
    """Trust the broker keys a rotation taught this agent before, if they chain from its file."""
    history = await store.get(BROKER_KEYS)
    if history is None:
        return
    try:
        keys = core.restore_broker_keys(history)
    except RemoteProtocolError as exc:
        log.warning(
            "the broker key history kept in the store does not chain from the configured"
            " broker.pub.json (%s); trusting the configured key alone",
            exc,
        )
        return
    log.info("broker signing key %s... (rotation %s)", keys.current.hex()[:16], keys.generation)
