"""The broker's signed statements about its ledger: "my ledger's link hash at ``seq`` is ``head``".

The broker signs the head of every durable commit (its checkpoint) and puts that
signature into each reply that moves money (``Redeemed``, ``Registered``, ``Balance``),
besides publishing its head as a retained broadcast. Every link hash covers everything
before it, so an agent holding such a statement can later prove that events up to
``seq`` existed exactly so: a ledger cut below it, or rewritten, contradicts the broker's
own signature.

    signature = Ed25519(TAG_CHECKPOINT || lp16(broker id) || u64(seq) || head)
"""

from __future__ import annotations

from typing import Final

from protocol.crypto import Identity, verify_signature
from protocol.errors import AuthenticationError, LedgerHeadError
from protocol.messages import SignedHead

TAG_CHECKPOINT: Final = b"micropay/v1/ledger-checkpoint\x00"


def checkpoint_message(broker_id: str, seq: int, head: bytes) -> bytes:
    """What the broker signs for a ledger head (after ``TAG_CHECKPOINT``)."""
    raw = broker_id.encode()
    return len(raw).to_bytes(2, "big") + raw + seq.to_bytes(8, "big") + head


def sign_head(broker: Identity, broker_id: str, seq: int, head: bytes) -> SignedHead:
    """The broker's signed statement about its ledger head."""
    signature = broker.sign(TAG_CHECKPOINT, checkpoint_message(broker_id, seq, head))
    return SignedHead(seq, head, signature)


def verify_head(broker_key: bytes, broker_id: str, signed: SignedHead) -> None:
    """Raise ``LedgerHeadError`` unless the broker really signed this head."""
    try:
        verify_signature(
            broker_key,
            TAG_CHECKPOINT,
            checkpoint_message(broker_id, signed.seq, signed.head),
            signed.signature,
        )
    except AuthenticationError as exc:
        raise LedgerHeadError(f"ledger head {signed.seq} is not signed by {broker_id}") from exc
