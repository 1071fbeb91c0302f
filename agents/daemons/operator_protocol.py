"""What the broker's admin socket speaks: typed operator requests and their answers.

One JSON object per line each way. A request names its ``command`` (the tag of a
tagged union) and is decoded strictly: a missing field, a field of the wrong JSON type
or a field the command does not take is refused before anything runs; the bounds of
each value are checked next, by ``admin_input``. An answer carries ``ok``; a refusal
carries ``error``, a message for a person.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ClassVar, Literal, Protocol, TypeVar

import msgspec

AccountRole = Literal["buyer", "vendor"]


class Granted(msgspec.Struct, frozen=True):
    """A request carried out."""

    ok: bool = True


class AccountOpened(Granted, kw_only=True, frozen=True):
    """The new account's one-time enrollment token (hex)."""

    token: str


class AllowanceSet(Granted, kw_only=True, frozen=True):
    """A buyer's daily allowance, as now set (applies from its next grant)."""

    account: str
    allowance: int


class Revoked(Granted, kw_only=True, frozen=True):
    """The certificate is revoked and the revocation list republished."""


class PeriodReport(msgspec.Struct, frozen=True):
    """A closed billing period, as the operator sees it."""

    period: str
    through_sequence: int
    invoices: int
    statements: int
    debited: int
    credited: int
    fees: int
    newly_closed: bool
    fee_basis_points: int


class PeriodClosed(Granted, kw_only=True, frozen=True):
    """The period is closed (now or earlier)."""

    summary: PeriodReport


class BrokerStatus(Granted, kw_only=True, frozen=True):
    """Accounts, commitments and totals of the running broker.

    The fields after ``ledger_head`` came later: they have defaults, so each end still
    reads the other's answer across versions.
    """

    accounts: int
    enrolled: tuple[str, ...]
    commitments: int
    debited: int
    credited: int
    ledger_head: int
    ledger_head_hash: str = ""
    buyers: int = 0
    vendors: int = 0
    revoked: int = 0
    reserved: int = 0


class Refused(msgspec.Struct, kw_only=True, frozen=True):
    """A request not carried out, and why."""

    ok: bool = False
    error: str = "refused"


Answer = AccountOpened | Revoked | PeriodClosed | BrokerStatus | AllowanceSet | Refused
GrantedT = TypeVar("GrantedT", bound=Granted)
GrantedT_co = TypeVar("GrantedT_co", bound=Granted, covariant=True)


class Asks(Protocol[GrantedT_co]):
    """A request that knows which answer grants it, so a client can decode that one."""

    @property
    def answer(self) -> type[GrantedT_co]:
        """The answer this request is granted with."""
        ...

    @property
    def command(self) -> str:
        """The request's name on the wire."""
        ...


class Command(
    msgspec.Struct, tag_field="command", forbid_unknown_fields=True, kw_only=True, frozen=True
):
    """An operator request; ``command`` on the wire names which."""

    @property
    def command(self) -> str:
        """The request's name on the wire (its tag)."""
        return str(self.__struct_config__.tag)


class OpenAccount(Command, tag="open-account", frozen=True):
    """Open an account (its credit limit in minor units)."""

    answer: ClassVar[type[AccountOpened]] = AccountOpened
    account: str
    role: AccountRole
    credit_limit: int
    currency: str = "EUR"
    allowance: int = 0
    """A buyer's daily off-line allowance (docs/SCHEMES.md §4); 0: none."""


class Revoke(Command, tag="revoke", frozen=True):
    """Revoke an account's certificate."""

    answer: ClassVar[type[Revoked]] = Revoked
    account: str
    reason: str = "operator"


class ClosePeriod(Command, tag="close-period", frozen=True):
    """Close a billing period (idempotent on the same terms, refused on others)."""

    answer: ClassVar[type[PeriodClosed]] = PeriodClosed
    period: str
    fee_basis_points: int = 0


class SetAllowance(Command, tag="set-allowance", frozen=True):
    """Set a buyer's daily off-line allowance in minor units (0: none)."""

    answer: ClassVar[type[AllowanceSet]] = AllowanceSet
    account: str
    allowance: int


class Status(Command, tag="status", frozen=True):
    """Ask for the broker's status."""

    answer: ClassVar[type[BrokerStatus]] = BrokerStatus


OperatorRequest = OpenAccount | Revoke | ClosePeriod | SetAllowance | Status
Run = Callable[[OperatorRequest], Awaitable[Answer]]

_REQUESTS: msgspec.json.Decoder[OperatorRequest] = msgspec.json.Decoder(OperatorRequest)


class _Outcome(msgspec.Struct):
    """Just ``ok``: which answer type the rest of the line is."""

    ok: bool = False


def encode(message: Asks[Granted] | Answer) -> bytes:
    """One line of the socket."""
    return msgspec.json.encode(message) + b"\n"


def decode_request(line: bytes) -> OperatorRequest:
    """A request line, decoded strictly; raises ``msgspec.DecodeError`` (a ValueError)."""
    return _REQUESTS.decode(line)


def decode_answer(line: bytes, granted: type[GrantedT]) -> GrantedT | Refused:
    """An answer line: the answer that grants the request, or the refusal."""
    if msgspec.json.decode(line, type=_Outcome).ok:
        return msgspec.json.decode(line, type=granted)
    return msgspec.json.decode(line, type=Refused)


async def answer_line(line: bytes, run: Run) -> bytes:
    """One request line in, one answer line out; a line that does not decode is refused."""
    try:
        answer = await run(decode_request(line))
    except (ValueError, ConnectionError) as exc:
        answer = Refused(error=str(exc))
    return encode(answer)
