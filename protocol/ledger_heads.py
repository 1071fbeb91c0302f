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

from dataclasses import dataclass
from typing import Final, Literal

from protocol.crypto import AgentKeys, verify_signature
from protocol.errors import AuthenticationError, LedgerHeadError
from protocol.messages import SignedHead

TAG_CHECKPOINT: Final = b"micropay/v1/ledger-checkpoint\x00"


def checkpoint_message(broker_id: str, seq: int, head: bytes) -> bytes:
    """What the broker signs for a ledger head (after ``TAG_CHECKPOINT``)."""
    raw = broker_id.encode()
    return len(raw).to_bytes(2, "big") + raw + seq.to_bytes(8, "big") + head


def sign_head(broker: AgentKeys, broker_id: str, seq: int, head: bytes) -> SignedHead:
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


HeadVerdict = Literal["new", "seen", "stale", "contradiction", "regression"]
"""How a signed head compares with the heads an agent already holds.

- ``new``: beyond every head held (or between them, and consistent).
- ``seen``: a head already held, delivered again (a retained message after a reconnect).
- ``stale``: below the highest head held, but signed earlier than it: an old statement
  delivered late (Mosquitto restarted from an older snapshot of its retained messages).
  Nothing is wrong; it is not kept.
- ``contradiction``: the broker signed two different hashes for the same sequence number.
- ``regression``: signed *later* than a higher head held: the broker's ledger went
  backwards (restored from a backup, or cut). Its events above this head are gone from it.
"""


@dataclass(frozen=True, slots=True)
class HeldHead:
    """A signed head an agent holds: where it came from and when the broker signed it."""

    seq: int
    head: bytes
    at: int  # the broker's clock, ms, when it made the statement
    scope: bytes  # a commitment id for a receipt's head; b"" for account-wide statements


class LedgerView:
    """The broker heads an agent holds, to judge each new one against (bounded memory)."""

    def __init__(self) -> None:
        self.highest: HeldHead | None = None
        self.by_scope: dict[bytes, HeldHead] = {}
        self.vouched = -1  # the highest seq the broker ever vouched for to this agent

    def judge(self, seq: int, head: bytes, at: int) -> HeadVerdict:
        """Compare a head the broker signed with every head held (changes nothing)."""
        for held in self._held():
            if held.seq == seq:
                return "seen" if held.head == head else "contradiction"
        highest = self.highest
        if highest is not None and seq < highest.seq:
            return "regression" if at > highest.at else "stale"
        return "new"

    def keep(self, held: HeldHead) -> None:
        """Remember a head (the latest per scope, and the highest overall)."""
        current = self.by_scope.get(held.scope)
        if current is None or held.seq >= current.seq or held.at > current.at:
            self.by_scope[held.scope] = held
        if self.highest is None or held.seq >= self.highest.seq:
            self.highest = held
        self.vouched = max(self.vouched, held.seq)

    def follow(self, held: HeldHead) -> None:
        """After an alarm (kept as evidence elsewhere), judge later heads against this one.

        A broker whose ledger went backwards goes on from its new head; every later head
        would otherwise raise the same alarm again.
        """
        self.highest = held
        for scope in [s for s, h in self.by_scope.items() if h.seq == held.seq]:
            del self.by_scope[scope]

    def _held(self) -> list[HeldHead]:
        found = list(self.by_scope.values())
        if self.highest is not None:
            found.append(self.highest)
        return found
