"""Which of the broker's key files sign now: its ledger's rotations say.

``broker.key`` holds the first signing key, the agreement key and the secret the
enrollment tokens come from; each rotation adds ``broker.key.N`` whose signing key takes
over (``SplitKeys``). A key file made by a rotation that crashed before its event was
committed is used again by the next attempt, never by the daemon.
"""

from __future__ import annotations

from agents.daemons.broker_files import BrokerFiles, BrokerSetupError
from agents.runtime.keystore import load_identity
from broker_ledger.ledger_keys import rotations_at
from protocol.crypto import AgentKeys
from protocol.split_keys import SplitKeys


def load_broker_keys(files: BrokerFiles) -> AgentKeys:
    """The broker's keys as its ledger's rotations leave them (the first key if none)."""
    anchor = load_identity(files.key)
    rotations = rotations_at(str(files.ledger)) if files.ledger.exists() else []
    if not rotations:
        return anchor
    generation = rotations[-1].sequence
    signer = load_identity(files.signing_key(generation))
    if signer.sign_key != rotations[-1].new_sign_key:
        raise BrokerSetupError(
            f"{files.signing_key(generation)} does not hold the signing key the ledger's"
            f" rotation {generation} installed"
        )
    return SplitKeys(signer, anchor)
