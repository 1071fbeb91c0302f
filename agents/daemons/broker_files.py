"""A broker's data directory: its layout, its public identity file, and its creation.

The directory holds the broker's key file, its public identity (what agents are
configured with), its ledger, the lock of the one process writing it and, while the
daemon runs, its admin socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agents.runtime.datadir_lock import DataDirLock
from agents.runtime.keystore import create_identity, load_identity
from agents.runtime.private_files import make_private_dir, write_private
from broker_ledger.store import EventStore
from protocol.codec import decode_signed_rotation
from protocol.endpoint import BrokerInfo
from protocol.errors import RemoteProtocolError
from protocol.trusted_keys import TrustedKeys

KEY_FILE: Final = "broker.key"
PUBLIC_FILE: Final = "broker.pub.json"
LEDGER_FILE: Final = "ledger.db"
ADMIN_SOCKET: Final = "admin.sock"


class BrokerSetupError(Exception):
    """The data directory is missing or not a broker's."""


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The layout of a broker's data directory."""

    directory: Path

    @property
    def key(self) -> Path:
        """The private key file."""
        return self.directory / KEY_FILE

    def signing_key(self, generation: int) -> Path:
        """The key file of the ``generation``-th signing key (0: ``broker.key`` itself).

        Each rotation adds ``broker.key.N``; the files before it are kept: ``broker.key``
        still holds the agreement key and the token secret, the others are evidence.
        """
        return self.key if generation == 0 else self.directory / f"{KEY_FILE}.{generation}"

    @property
    def public(self) -> Path:
        """The public identity agents are configured with."""
        return self.directory / PUBLIC_FILE

    @property
    def ledger(self) -> Path:
        """The ledger file."""
        return self.directory / LEDGER_FILE

    @property
    def admin(self) -> Path:
        """The daemon's admin socket."""
        return self.directory / ADMIN_SOCKET


def write_public(path: Path, info: BrokerInfo) -> None:
    """The broker's public identity as JSON (hex keys)."""
    data: dict[str, object] = {
        "broker": info.id,
        "sign_key": info.sign_key.hex(),
        "agree_key": info.agree_key.hex(),
    }
    if info.rotations:  # the keys before sign_key, each handing over to the next
        data["rotations"] = [rotation.hex() for rotation in info.rotations]
    write_private(path, json.dumps(data, indent=2) + "\n")


def read_public(path: Path) -> BrokerInfo:
    """Read a broker's public identity file."""
    try:
        data = json.loads(path.read_text())
        info = BrokerInfo(
            data["broker"],
            bytes.fromhex(data["sign_key"]),
            bytes.fromhex(data["agree_key"]),
            tuple(bytes.fromhex(rotation) for rotation in data.get("rotations", ())),
        )
        pinned = TrustedKeys.pinned_to(info.id, info.sign_key, info.agree_key)
        pinned.extend(decode_signed_rotation(rotation) for rotation in info.rotations)
    except FileNotFoundError as exc:
        raise BrokerSetupError(f"no broker identity at {path}") from exc
    except (ValueError, KeyError, TypeError, RemoteProtocolError) as exc:
        raise BrokerSetupError(f"{path} is not a broker identity file: {exc}") from exc
    return info


async def init_broker(directory: Path, broker_id: str) -> BrokerInfo:
    """Create keys (or take those `micropay keys init` made), the identity file, a ledger."""
    files = BrokerFiles(directory)
    make_private_dir(directory)
    with DataDirLock.acquire(directory, "broker command"):
        if files.ledger.exists():
            raise BrokerSetupError(f"{directory} already holds a broker; refusing to start over")
        identity = load_identity(files.key) if files.key.exists() else create_identity(files.key)
        info = BrokerInfo(broker_id, identity.sign_key, identity.agree_key)
        write_public(files.public, info)
        store = await EventStore.open(files.ledger, broker_id, signer=identity)
        await store.close()
    return info
