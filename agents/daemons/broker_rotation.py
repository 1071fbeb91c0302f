"""Rotating the broker's signing key, with the daemon stopped (its data directory's lock).

Offline is what keeps it simple and sound: the daemon's core, its ledger writer and the
key files change together, with nothing in flight; agents learn the new key from the
retained identity the daemon publishes when it starts again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from agents.daemons.broker_files import write_public
from agents.daemons.broker_service import BrokerService
from agents.runtime.keystore import create_successor, load_identity

log = logging.getLogger("micropay.broker")


@dataclass(frozen=True, slots=True)
class Rotated:
    """What a rotation did: which key retired, which took over, where in the ledger."""

    generation: int
    old_sign_key: bytes
    new_sign_key: bytes
    seq: int
    key_file: Path


async def rotate_broker_key(directory: Path, clock: float | None = None) -> Rotated:
    """Rotate the broker's signing key; the daemon must be stopped (the lock says so).

    The new key signs a statement with the old one, recorded in the ledger; that commit
    and every one after it are signed by the new key; ``broker.pub.json`` names it.
    Agents configured with the old file follow the statement (docs/PROTOCOL.md 11.11).
    """
    service = await BrokerService.open(directory)
    try:
        core, store, files = service.core, service.store, service.files
        generation = core.trusted.generation + 1
        path = files.signing_key(generation)
        current = files.signing_key(generation - 1)
        new = load_identity(path) if path.exists() else create_successor(current, path)
        from_seq = store.head[0] + 1
        event = core.rotate_key(new, from_seq, time.time() if clock is None else clock)
        store.use_signer(core.identity)  # the rotation's own commit is the new key's first
        await service.persist([event])
        await store.record_key(new.sign_key)
        write_public(files.public, core.info)
    finally:
        await service.close()
    log.warning(
        "broker signing key rotated: generation %s, %s... retired, %s... in force from ledger"
        " seq=%s; the new key is in %s",
        generation,
        event.old_sign_key.hex()[:16],
        event.new_sign_key.hex()[:16],
        from_seq,
        path,
    )
    return Rotated(generation, event.old_sign_key, event.new_sign_key, from_seq, path)
