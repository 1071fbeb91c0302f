"""The broker's books: accounts, chains and totals, folded from its ledger events.

State changes only through ``apply`` of a ``BrokerEvent``, both live and when the ledger
replays history, so the state after a restart is exactly the state before it.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from protocol.allowance import DEFAULT_ALLOWANCE_VENDORS
from protocol.allowance_book import AllowanceBook
from protocol.broker_events import (
    AccountOpened,
    AllowanceGranted,
    AllowanceReleased,
    AllowanceSet,
    AnyBrokerEvent,
    BrokerKeyRotated,
    CertificateIssued,
    CertificateRekeyed,
    CertificateRevoked,
    CommitmentRegistered,
    DepositRejected,
    PaywordsRedeemed,
    ReservationReleased,
    ScripDeposited,
    ScripMinted,
    ScripReturned,
)
from protocol.codec import (
    decode_certificate,
    decode_commitment,
    decode_signed,
    decode_signed_rotation,
)
from protocol.crypto import (
    AgentKeys,
)
from protocol.endpoint import BrokerInfo, Endpoint
from protocol.errors import LocalProtocolError
from protocol.events import BrokerCoreEvent
from protocol.messages import (
    MAX_REVOKED,
    Certificate,
    Commitment,
    RevocationList,
    Role,
)
from protocol.scrip_state import (
    DEFAULT_DEPOSIT_GRACE,
    DEFAULT_MAX_SCRIP_VALUE,
    DEFAULT_SCRIP_LIFETIME,
    ScripState,
    scrip_policy_problem,
)
from protocol.trusted_keys import TrustedKeys

DAY = 86_400.0


@dataclass(slots=True)
class Account:
    """One buyer's or vendor's account at the broker."""

    name: str
    role: Role
    credit_limit: int
    currency: str
    token_nonce: bytes
    certificate: bytes = b""
    sign_key: bytes = b""
    agree_key: bytes = b""
    serial: int = 0
    # the certificate a rekey replaced: its key may still ask for the same new keys again
    previous_serial: int = 0
    previous_sign_key: bytes = b""
    previous_agree_key: bytes = b""


@dataclass(slots=True)
class ChainRecord:
    """What the broker knows of one commitment."""

    buyer: str
    vendor: str
    commitment: bytes
    length: int
    unit_value: int
    root: bytes
    reserved: int
    index: int = 0
    word: bytes = b""
    amount: int = 0


@dataclass(slots=True)
class BrokerPolicy:
    """Operator settings for certificates, redemption and scrip (times in seconds)."""

    certificate_lifetime: float = 365 * DAY
    redemption_grace: float = 30 * DAY
    max_chain_length: int = 1_000_000
    revoke_over_limit: bool = True
    # --- scrip (docs/SCHEMES.md 3.8, 3.13) ---
    max_scrip_value: int = DEFAULT_MAX_SCRIP_VALUE
    scrip_lifetime: float = DEFAULT_SCRIP_LIFETIME
    scrip_deposit_grace: float = DEFAULT_DEPOSIT_GRACE
    scrip_properties: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse scrip settings no scrip could carry (docs/SCHEMES.md 3.1, 3.13)."""
        if (problem := scrip_policy_problem(self)) is not None:
            raise LocalProtocolError(problem)

    # MiniPay (docs/SCHEMES.md 4.4): the vendors a day's allowance reservation covers
    allowance_vendors: int = DEFAULT_ALLOWANCE_VENDORS


@dataclass(slots=True)
class Totals:
    """Running totals per account (and per buyer-vendor pair), folded from the events."""

    debited: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    credited: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    reserved: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    units: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    amounts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


class BrokerBooks(Endpoint[BrokerCoreEvent]):
    """The broker's accounts, chains and totals, changed only by ``apply``.

    What a call decided waits in ``_decided`` until the call hands it to the shell.
    """

    def __init__(  # noqa: PLR0913 - identity, policy, limits
        self,
        broker_id: str,
        identity: AgentKeys,
        policy: BrokerPolicy,
        *,
        max_message_size: int,
        max_skew: float,
        attest_replies: bool,
    ) -> None:
        super().__init__(broker_id, identity, max_message_size=max_message_size, max_skew=max_skew)
        self.attest_replies = attest_replies
        self.info = BrokerInfo(broker_id, identity.sign_key, identity.agree_key)
        self.trusted = TrustedKeys.pinned_to(broker_id, identity.sign_key, identity.agree_key)
        """Its signing keys: the one in force and, after rotations, every one before it."""
        self.policy = policy
        self.accounts: dict[str, Account] = {}
        self.chains: dict[bytes, ChainRecord] = {}
        self.revoked: dict[int, str] = {}
        self.expiry: dict[int, int] = {}
        self.issued: dict[int, bytes] = {}
        """Every certificate it issued, by serial: the exact bytes, to recognise its own."""
        """Each certificate's ``not_after`` (ms) by serial: listed revocations end with it."""
        self.totals = Totals()
        self._next_serial = 1
        self._decided: list[AnyBrokerEvent] = []  # by the call in progress
        # (redemption deadline, id) of on-line commitments that reserved credit; entries
        # whose reservation is used up are dropped lazily
        self._reservation_deadlines: list[tuple[float, bytes]] = []
        # --- scrip: serial → record, request ids, return deadlines (docs/SCHEMES.md 3.8) ---
        self.scrip = ScripState()
        self.scrip_pair_secrets: dict[int, tuple[str, bytes]] = {}
        """Certificate serial → (account, pair key): cached, a serial's key never changes."""
        # MiniPay's daily allowances (docs/SCHEMES.md §4)
        self.allowances = AllowanceBook()

    # --- state: the only place it changes ----------------------------------------------------

    def apply(self, event: AnyBrokerEvent) -> None:
        """Fold one event into the state (live or replayed from the ledger)."""
        totals = self.totals
        match event:
            case AccountOpened():
                self.accounts[event.account] = Account(
                    event.account, event.role, event.credit_limit, event.currency, event.token_nonce
                )
            case CertificateIssued() | CertificateRekeyed():
                self._certify(event.account, event.serial, event.certificate)
            case BrokerKeyRotated():
                rotation = decode_signed_rotation(event.rotation)
                self.trusted = TrustedKeys.pinned_to(
                    self.account, event.new_sign_key, self.identity.agree_key
                ).extend([*self.trusted.signed, rotation])
            case CertificateRevoked():
                self.revoked[event.serial] = event.account
            case CommitmentRegistered():
                commitment = commitment_of(event.commitment)
                self.chains[event.commitment_id] = ChainRecord(
                    event.buyer,
                    event.vendor,
                    event.commitment,
                    event.length,
                    event.unit_value,
                    commitment.root,
                    event.reserved,
                    word=commitment.root,
                )
                totals.reserved[event.buyer] += event.reserved
                if event.reserved:
                    deadline = commitment.not_after / 1000 + self.policy.redemption_grace
                    heapq.heappush(self._reservation_deadlines, (deadline, event.commitment_id))
            case ReservationReleased():
                self.chains[event.commitment_id].reserved -= event.amount
                totals.reserved[event.buyer] -= event.amount
            case PaywordsRedeemed():
                record = self.chains[event.commitment_id]
                record.index = event.index
                record.word = event.payword
                record.amount += event.amount
                released = min(record.reserved, event.amount)
                record.reserved -= released
                totals.reserved[event.buyer] -= released
                totals.debited[event.buyer] += event.amount
                totals.credited[event.vendor] += event.amount
                totals.units[event.buyer, event.vendor] += event.units
                totals.amounts[event.buyer, event.vendor] += event.amount
            case (
                ScripMinted()
                | ScripDeposited()
                | ScripReturned()
                | DepositRejected()
                | AllowanceSet()
                | AllowanceGranted()
                | AllowanceReleased()
            ):
                self._fold_other_scheme(event)
            case _:
                pass  # refusals, alerts and billing change no protocol state

    def _fold_other_scheme(
        self,
        event: ScripMinted
        | ScripDeposited
        | ScripReturned
        | DepositRejected
        | AllowanceSet
        | AllowanceGranted
        | AllowanceReleased,
    ) -> None:
        """Scrip (docs/SCHEMES.md 3.6, 3.8); a day's grant reserves credit until released (4.4)."""
        if isinstance(event, ScripMinted | ScripDeposited | ScripReturned | DepositRejected):
            self.scrip.apply(event, self.totals)
            return
        change = self.allowances.apply(event)
        if not isinstance(event, AllowanceSet):
            self.totals.reserved[event.buyer] += change

    def _certify(self, name: str, serial: int, signed: bytes) -> None:
        account = self.accounts[name]
        if account.serial:
            account.previous_serial = account.serial
            account.previous_sign_key, account.previous_agree_key = (
                account.sign_key,
                account.agree_key,
            )
        certificate = certificate_of(signed)
        self.expiry[serial] = certificate.not_after
        self.issued[serial] = signed
        account.certificate = signed
        account.sign_key = certificate.sign_key
        account.agree_key = certificate.agree_key
        account.serial = serial
        self._next_serial = max(self._next_serial, serial + 1)
        self._pair_keys.pop(name, None)

    def rebuild(self, events: Iterable[AnyBrokerEvent]) -> None:
        """Rebuild the state from the ledger's history."""
        for event in events:
            self.apply(event)

    def _record(self, event: AnyBrokerEvent) -> None:
        self.apply(event)
        self._decided.append(event)

    def _take_decided(self) -> list[AnyBrokerEvent]:
        """What the current call decided, handed back to the shell to persist."""
        out, self._decided = self._decided, []
        return out

    def listed_revocations(self, now: float) -> list[int]:
        """The serials the revocation list carries: revoked certificates not yet expired.

        Every party refuses an expired certificate, and no chain outlives its certificate
        (a commitment's ``not_after`` is at most the certificate's), so an expired serial
        needs no listing; that is what keeps the list within ``MAX_REVOKED``. Rekeys and
        the operator stop short of it (``REKEY_ROOM``, ``OVER_LIMIT_RESERVE``); should
        automatic revocations still pass it, the list keeps the ``MAX_REVOKED`` that expire
        last rather than become a message no agent can read.
        """
        now_ms = ms(now)
        listed = [s for s in self.revoked if self.expiry.get(s, now_ms) >= now_ms]
        if len(listed) > MAX_REVOKED:
            listed.sort(key=lambda serial: self.expiry.get(serial, now_ms))
            listed = listed[-MAX_REVOKED:]
        return sorted(listed)

    def listed_of(self, account: str, now: float) -> int:
        """How many of ``account``'s revoked certificates the list carries now."""
        now_ms = ms(now)
        return sum(
            1
            for serial, holder in self.revoked.items()
            if holder == account and self.expiry.get(serial, now_ms) >= now_ms
        )

    def publish_revocations(self, now: float) -> None:
        """Queue the retained, signed revocation list.

        ``sequence`` counts every revocation ever made, so it grows with each one even as
        expired serials leave the list (a receiver keeps the highest sequence).
        """
        serials = self.listed_revocations(now)
        body = RevocationList(self.account, len(self.revoked), ms(now), serials)
        self.broadcast("revocations", body, now)


OVER_LIMIT_RESERVE: Final = 100
"""Places on the revocation list only the broker's own over-limit revocations may take."""
REKEY_ROOM: Final = MAX_REVOKED - 1_000
"""Rekeys stop when the list holds this many: a rekey is never worth a revocation's place."""
REKEYS_LISTED_PER_ACCOUNT: Final = 4
"""An account's revoked certificates the list may carry before its next rekey waits."""


def ms(now: float) -> int:
    """Seconds (the shell's clock) to the milliseconds events and messages carry."""
    return int(now * 1000)


def certificate_of(signed: bytes) -> Certificate:
    """The certificate inside a ``Signed`` the broker issued (checked when it was)."""
    return decode_certificate(decode_signed(signed).body)


def commitment_of(signed: bytes) -> Commitment:
    """The commitment inside a ``Signed`` the broker verified before recording it."""
    return decode_commitment(decode_signed(signed).body)
