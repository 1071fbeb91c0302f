"""Every structure that crosses the wire, as frozen msgspec structs encoded as MessagePack arrays.

Arrays, not maps: the field order below *is* the wire format (documented field by field in
``docs/PROTOCOL.md``). New fields may only be appended, with defaults. Signed objects
(certificates, commitments) travel as the exact bytes that were signed, wrapped in
``Signed``, so nobody has to re-encode anything canonically to verify it.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Key32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Sig64 = Annotated[bytes, msgspec.Meta(min_length=64, max_length=64)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Index = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Currency = Annotated[str, msgspec.Meta(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]
Text = Annotated[str, msgspec.Meta(max_length=256)]
Blob = Annotated[bytes, msgspec.Meta(max_length=8192)]
Corr = Annotated[bytes, msgspec.Meta(max_length=16)]
Role = Literal["buyer", "vendor", "broker"]
MAX_REVOKED: Final = 7_000
"""Serials one revocation list may carry: 7,000 of the largest (9 bytes each in MessagePack)
fit a 64 KiB message with room to spare; only unexpired certificates are listed (11.10)."""
IssuerKey = Annotated[bytes, msgspec.Meta(max_length=32)]
MAX_ROTATIONS = 16
"""Rotation statements a broker's identity carries: an agent pinned further back re-pins."""


class Wire(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """Base of all wire structs: positional, immutable, strict."""


# --- signed objects -------------------------------------------------------------------------


class Signed(Wire, frozen=True):
    """The exact bytes of a signed object and the Ed25519 signature over ``tag || body``."""

    body: Blob
    signature: Sig64


class Certificate(Wire, frozen=True, omit_defaults=True):
    """PayWord's user certificate, issued by the broker to buyers and vendors alike.

    ``issuer_key`` names the broker key that signed it. It is left out (and the bytes are
    those of a certificate from before key rotation) when that key is the broker's first.
    """

    serial: Positive
    subject: Id
    role: Role
    sign_key: Key32
    agree_key: Key32
    credit_limit: Count
    currency: Currency
    not_before: Millis
    not_after: Millis
    issuer: Id
    issuer_key: IssuerKey = b""


class KeyRotation(Wire, frozen=True):
    """The broker's statement that its signing key ``old_sign_key`` is succeeded by a new one.

    Signed by both keys (``SignedRotation``). ``from_seq`` is the ledger sequence number
    of the event that records it: checkpoints from there on are signed by the new key.
    """

    broker: Id
    sequence: Positive
    old_sign_key: Key32
    new_sign_key: Key32
    agree_key: Key32
    from_seq: Count
    at: Millis


class SignedRotation(Wire, frozen=True):
    """A ``KeyRotation``'s exact bytes, signed by the key it retires and the key it installs."""

    statement: Blob
    old_signature: Sig64
    new_signature: Sig64


class Commitment(Wire, frozen=True):
    """PayWord's commitment M: the buyer binds one chain root to one vendor."""

    vendor: Id
    buyer_certificate: Blob
    root: Key32
    length: Annotated[int, msgspec.Meta(ge=1, le=2**32 - 1)]
    unit_value: Positive
    currency: Currency
    issued_at: Millis
    not_after: Millis


Property = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
MAX_PROPERTIES: Final = 8
SCRIP_NONCE_SIZE: Final = 16
ScripNonce = Annotated[
    bytes, msgspec.Meta(min_length=SCRIP_NONCE_SIZE, max_length=SCRIP_NONCE_SIZE)
]


class Scrip(Wire, frozen=True):
    """Millicent's vendor scrip: value a buyer holds at one vendor (docs/SCHEMES.md 3.1).

    ``generation`` is 0 as minted and one more for each change made from it, so a serial's
    spends form one line and a spent set needs one number per serial. ``buyer_serial`` is
    the buyer's certificate at minting (a vendor refuses it once revoked); ``nonce`` is the
    broker's random draw at minting, carried into every change: the broker credits only
    scrip that carries it, so a vendor cannot rebuild scrip it never saw from the serial.
    """

    vendor: Id
    vendor_serial: Positive
    period: Index
    serial: Positive
    generation: Index
    buyer: Id
    buyer_serial: Positive
    value: Positive
    currency: Currency
    expires: Millis
    properties: Annotated[list[Property], msgspec.Meta(max_length=MAX_PROPERTIES)]
    nonce: ScripNonce


class TaggedScrip(Wire, frozen=True):
    """A ``Scrip``'s exact bytes and its MAC under the vendor's scrip key of that period."""

    body: Blob
    tag: Key32


# --- message bodies -------------------------------------------------------------------------


class EnrollRequest(Wire, frozen=True):
    """Agent to broker, MAC'd with the one-time token's key: "certify these public keys"."""

    sign_key: Key32
    agree_key: Key32
    proof: Sig64


class Enrolled(Wire, frozen=True):
    """Broker to agent: the new certificate (``Signed`` bytes)."""

    certificate: Blob


class BrokerIdentity(Wire, frozen=True):
    """Retained and signed by the broker: who it is, its two public keys, its key history.

    ``rotations`` (appended later) are the last rotation statements, oldest first: an
    agent pinned to an earlier signing key walks them to ``sign_key``.
    """

    broker: Id
    sign_key: Key32
    agree_key: Key32
    rotations: Annotated[list[SignedRotation], msgspec.Meta(max_length=MAX_ROTATIONS)] = (
        msgspec.field(default_factory=list)
    )


class RekeyRequest(Wire, frozen=True):
    """Agent to broker, MAC'd with the pair key: "certify these new keys in place of mine".

    ``proof`` is by the new signing key (as enrollment's), ``authorization`` by the
    signing key of certificate ``serial``, the one being replaced.
    """

    serial: Positive
    sign_key: Key32
    agree_key: Key32
    proof: Sig64
    authorization: Sig64


class Rekeyed(Wire, frozen=True):
    """Broker to agent: the certificate for the new keys (``Signed`` bytes)."""

    certificate: Blob


class OfferItem(Wire, frozen=True):
    """One priced item of a vendor's offer; ``price`` in minor units, like every amount."""

    item: Text
    price: Positive


class Offer(Wire, frozen=True):
    """Retained and signed by the vendor: its price list and the terms it accepts."""

    certificate: Blob
    unit_value: Positive
    currency: Currency
    max_length: Positive
    max_jump: Positive
    online: bool
    valid_until: Millis
    items: Annotated[list[OfferItem], msgspec.Meta(max_length=256)]
    # appended (docs/SCHEMES.md 3.7), left out while both are false
    scrip: bool = False
    """The vendor takes ``scrip-pay`` (Millicent scrip)."""
    allowance: bool = False
    """The vendor accepts chains off-line under the buyer's daily allowance grant (SCHEMES §4)."""


class Commit(Wire, frozen=True):
    """Buyer to vendor: a signed commitment (``Signed`` bytes of a ``Commitment``)."""

    commitment: Blob
    # appended (docs/SCHEMES.md 4.2), left out while empty
    allowance: Blob = b""
    """The ``Signed`` bytes of the buyer's daily ``AllowanceGrant``, for a vendor that takes one."""


class Payment(Wire, frozen=True):
    """Buyer to vendor: ``index`` units paid in total on this chain, proven by ``payword``."""

    commitment_id: Key32
    index: Index
    payword: Key32
    item: Text = ""


class Receipt(Wire, frozen=True):
    """Vendor to buyer: cumulative, the highest index accepted so far on the chain."""

    commitment_id: Key32
    index: Index
    amount: Count


class SignedHead(Wire, frozen=True):
    """The broker's signature over its ledger's link hash at ``seq`` (``protocol.ledger_heads``).

    It rides on every reply that moves money, so the agent holds proof of the ledger
    that made the reply's events durable.
    """

    seq: Count
    head: Key32
    signature: Sig64


class Redeem(Wire, frozen=True):
    """Vendor to broker: the commitment and the highest payword it holds."""

    commitment: Blob
    index: Index
    payword: Key32


class Redeemed(Wire, frozen=True):
    """Broker to vendor: the highest index credited on the chain and the total amount credited."""

    commitment_id: Key32
    index: Index
    amount: Count
    ledger: SignedHead | None = None


class Register(Wire, frozen=True):
    """Vendor to broker, on-line mode: "may I accept this commitment?"."""

    commitment: Blob


class Registered(Wire, frozen=True):
    """Broker to vendor: the on-line verdict on a commitment."""

    commitment_id: Key32
    approved: bool
    reason: Text = ""
    ledger: SignedHead | None = None


class BalanceQuery(Wire, frozen=True):
    """Agent to broker: the sender's own balance."""


class Balance(Wire, frozen=True):
    """Broker to agent: what a buyer owes (debited) and a vendor is owed (credited).

    ``credit_limit`` and ``revoked`` came later (appended), so a buyer can be told why it
    can pay no more.
    """

    account: Id
    currency: Currency
    debited: Count
    credited: Count
    reserved: Count
    ledger: SignedHead | None = None
    credit_limit: Count = 0
    revoked: bool = False


class InvoiceQuery(Wire, frozen=True):
    """Agent to broker: the invoice (buyer) or statement (vendor) of the open period."""


class InvoiceLine(Wire, frozen=True):
    """One counterparty's share of an invoice or statement."""

    counterparty: Id
    units: Count
    amount: Count


class Invoice(Wire, frozen=True):
    """Broker to agent: lines per counterparty and their total."""

    account: Id
    currency: Currency
    lines: Annotated[list[InvoiceLine], msgspec.Meta(max_length=4096)]
    total: Count


class RevocationList(Wire, frozen=True):
    """Retained and signed by the broker: revoked certificate serials."""

    issuer: Id
    sequence: Count
    issued_at: Millis
    serials: Annotated[list[Positive], msgspec.Meta(max_length=MAX_REVOKED)]


class LedgerHead(Wire, frozen=True):
    """Retained and signed by the broker: its ledger's link hash at ``seq``.

    Every agent keeps the signed envelopes it sees. A broker that later rewrites any event
    up to ``seq`` (even re-signing its own checkpoints) contradicts a statement it signed.
    """

    issuer: Id
    seq: Count
    head: Key32
    at: Millis


# --- scrip (docs/SCHEMES.md 3.7): not yet sent by the reference cores -----------------------

RequestId = Annotated[bytes, msgspec.Meta(min_length=16, max_length=16)]
"""A buyer's random id for one mint request: a repeat gets the same answer."""
CLAIM_SIZE: Final = 16
"""The random bytes an on-line vendor draws for each payment it deposits (``Deposit.claim``)."""
Claim = Annotated[bytes, msgspec.Meta(max_length=CLAIM_SIZE)]


class MintRequest(Wire, frozen=True):
    """Buyer to broker: "mint me scrip worth ``value`` at ``vendor``"."""

    vendor: Id
    value: Positive
    request: RequestId


class Minted(Wire, frozen=True):
    """Broker to buyer: the tagged scrip and the customer secret, wrapped for the buyer.

    The buyer cannot check the tag (only the vendor and the broker hold the key), so it
    checks the scrip's body against what it asked for.
    """

    request: RequestId
    scrip: Blob
    secret: Key32
    ledger: SignedHead | None = None


class ScripPayment(Wire, frozen=True):
    """Buyer to vendor, under the customer secret: spend ``price`` of this scrip on ``item``."""

    scrip: Blob
    item: Text
    price: Positive


class ScripPaid(Wire, frozen=True):
    """Vendor to buyer: which generation was spent, and the change (empty when used up)."""

    serial: Positive
    generation: Index
    price: Positive
    change: Blob


class Deposit(Wire, frozen=True):
    """Vendor to broker: the highest generation of a serial it accepted, and its change.

    The broker recomputes the change and compares the bytes, so a vendor cannot inflate it.
    ``claim`` is empty off-line; an on-line vendor draws it per payment and sends it with
    every retry, so the broker tells its own retry (served) from another process's deposit
    of the same payment (a ``repeat``, not served again; docs/SCHEMES.md 3.9).
    """

    spent: Blob
    item: Text
    price: Positive
    change: Blob
    claim: Claim = b""


class Deposited(Wire, frozen=True):
    """Broker to vendor: what the serial has credited so far and what is still unspent.

    ``change`` is the change recorded with ``generation``, so an on-line vendor can answer
    a repeated payment without storing change itself. ``repeat`` is true when this deposit
    credited nothing because the broker had credited it (or a later generation) before,
    and not for a deposit with this deposit's (non-empty) ``claim``: an on-line vendor
    answers the buyer but does not serve again (docs/SCHEMES.md 3.9).
    """

    serial: Positive
    generation: Index
    credited: Count
    outstanding: Count
    change: Blob
    ledger: SignedHead | None = None
    repeat: bool = False


# --- MiniPay's daily allowance (docs/SCHEMES.md §4) ------------------------------------------


class AllowanceGrant(Wire, frozen=True):
    """Signed by the broker: what each vendor may accept off-line from ``buyer`` on ``day``."""

    issuer: Id
    buyer: Id
    serial: Positive
    day: Index
    amount: Count
    currency: Currency


class AllowanceQuery(Wire, frozen=True):
    """Buyer to broker: "today's allowance grant, please"."""


class Allowance(Wire, frozen=True):
    """Broker to buyer: the day's grant (``Signed`` bytes of an ``AllowanceGrant``)."""

    grant: Blob
    ledger: SignedHead | None = None


class Error(Wire, frozen=True):
    """Any direction: the request with this correlation id was refused, and why."""

    code: Text
    detail: Text


Body = (
    EnrollRequest
    | Enrolled
    | BrokerIdentity
    | Offer
    | Commit
    | Payment
    | Receipt
    | Redeem
    | Redeemed
    | Register
    | Registered
    | BalanceQuery
    | Balance
    | InvoiceQuery
    | Invoice
    | RevocationList
    | LedgerHead
    | Error
    | RekeyRequest
    | Rekeyed
    | MintRequest
    | Minted
    | ScripPayment
    | ScripPaid
    | Deposit
    | Deposited
    | AllowanceQuery
    | Allowance
)

# The envelope's ``type`` field names the body's schema; these strings are the wire format.
MESSAGE_TYPES: Final[dict[str, type[Body]]] = {
    "enroll": EnrollRequest,
    "enrolled": Enrolled,
    "identity": BrokerIdentity,
    "offer": Offer,
    "commit": Commit,
    "pay": Payment,
    "receipt": Receipt,
    "redeem": Redeem,
    "redeemed": Redeemed,
    "register": Register,
    "registered": Registered,
    "balance?": BalanceQuery,
    "balance": Balance,
    "invoice?": InvoiceQuery,
    "invoice": Invoice,
    "revocations": RevocationList,
    "ledger-head": LedgerHead,
    "error": Error,
    "rekey": RekeyRequest,
    "rekeyed": Rekeyed,
    "scrip?": MintRequest,
    "scrip": Minted,
    "scrip-pay": ScripPayment,
    "scrip-paid": ScripPaid,
    "deposit": Deposit,
    "deposited": Deposited,
    "allowance?": AllowanceQuery,
    "allowance": Allowance,
}
TYPE_NAMES: Final[dict[type[Body], str]] = {cls: name for name, cls in MESSAGE_TYPES.items()}
