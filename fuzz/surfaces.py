"""The protocol's untrusted-input surfaces, a rig that drives them, and their invariants.

One module serves the property tests (``tests/fuzz``) and the long-running driver
(``fuzz/run.py``), so a finding of one reproduces in the other. The rig is a world after a
real flow: its captured envelopes seed the mutations, and its keys seal hostile bodies in
envelopes with a correct MAC or signature, so the code *after* authentication is reached.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Final, Protocol, TypeVar, get_args

import msgspec

from protocol import codec, credentials, envelope, topics
from protocol.broker import BrokerCore
from protocol.broker_events import DepositRejected, RedemptionRejected, RegistrationRefused
from protocol.buyer import BuyerCore
from protocol.chain import HashChain, PaywordChain
from protocol.crypto import (
    TAG_CERTIFICATE,
    TAG_COMMITMENT,
    TAG_ENROLL_PROOF,
    AgentKeys,
    MacKey,
    pair_key,
)
from protocol.endpoint import Endpoint
from protocol.envelope import BROADCAST, PROTOCOL_VERSION, Auth, Header
from protocol.errors import MalformedMessageError, RemoteProtocolError
from protocol.events import MessageRejected
from protocol.messages import (
    MESSAGE_TYPES,
    Balance,
    BalanceQuery,
    BrokerIdentity,
    Commit,
    Enrolled,
    EnrollRequest,
    Error,
    Invoice,
    InvoiceLine,
    InvoiceQuery,
    Payment,
    Receipt,
    Redeem,
    Redeemed,
    Register,
    Registered,
    RevocationList,
    TaggedScrip,
    Wire,
)
from protocol.scrip import TAG_SCRIP, scrip_key
from protocol.vendor import VendorCore
from tests.support.forgery import MALLORY, chain_mac_key, seal_header
from tests.support.world import SeededRandom, World, default_terms, make_world, seeded_identity

LEDGERED_REFUSALS = (MessageRejected, RedemptionRejected, RegistrationRefused, DepositRejected)

T = TypeVar("T")

SHOP: Final = "shop"
"""The rig's off-line scrip vendor (``vendor2`` checks scrip on-line)."""

MAX_COUNT: Final = 2**63 - 1
"""The wire's ``Count``: no total may outgrow what a ``Balance`` or ``Invoice`` can carry."""

SURFACES: Final = ("decoders", "raw", "mutated", "sealed", "forged")
"""What the first byte of a fuzzer input selects (modulo their number)."""

KINDS: Final = (*MESSAGE_TYPES, "", "nonsense", "x" * 17)
"""Envelope types to seal: every real one, and some no decoder knows."""

INTS: Final = (
    *(0, 1, 2, -1, 255, 256, 65_535, 2**31 - 1, 2**32 - 1, 2**32, 2**53 + 1),
    *(MAX_COUNT, 2**63, 2**64 - 1, -(2**31), -(2**63)),
)
LENGTHS: Final = (0, 1, 3, 16, 17, 31, 32, 33, 63, 64, 65, 255, 256, 257, 4097, 8192, 8193, 60_000)
FLOATS: Final = (0.0, -0.0, 1.5, math.inf, -math.inf, math.nan, 1e308)
STRINGS: Final = (
    *("", "EUR", "USD", "eur", "buyer1", "vendor1", "vendor2", "broker", "newbie", "*"),
    *("x" * 64, "x" * 65, "€uro", "\x00", "a/b", "+", "#", "../"),
)
DEPTHS: Final = (2, 100, 1_000, 60_000, 100_000)
"""Nesting depths; past about 65,000 the envelope no longer fits the size limit."""

INVALID: Final = (
    b"\xdb\xff\xff\xff\xffab",  # str32 claiming 4 GiB
    b"\xc6\xff\xff\xff\xffab",  # bin32 claiming 4 GiB
    b"\xdd\xff\xff\xff\xff",  # array32 claiming 4 G elements
    b"\xdf\xff\xff\xff\xff",  # map32 likewise
    b"\xc9\xff\xff\xff\xff\x01ab",  # ext32 likewise
    b"\xa2\xff\xfe",  # a str that is not UTF-8
    b"\xc1",  # the one byte MessagePack never uses
    b"\xd5\xff\x00\x00",  # a timestamp of an impossible size
)
"""MessagePack no schema accepts: length bombs and malformed fragments."""
ODDITIES: Final = (
    *INVALID,
    b"\xd6\xff\x00\x00\x00\x00",  # a timestamp
    b"\xca\x7f\xc0\x00\x00",  # float32 NaN
    b"\xcf" + b"\xff" * 8,  # uint64 max
    b"\xd3" + b"\x00" * 7 + b"\x01",  # 1 as a needlessly wide int64
    b"\xdb\x00\x00\x00\x03EUR",  # "EUR" as a needlessly wide str32
    b"\xdc\x00\x00",  # an empty array16
)
"""``INVALID`` and odd but valid encodings."""
LOW_ORDER_X25519: Final = (bytes(32), b"\x01" + bytes(31), b"\xe0\xeb\x7a\x7c" + bytes(28))
INTERESTING_BYTES: Final = (0x00, 0xFF, 0x7F, 0x80, 0x90, 0x9F, 0xC0, 0xC1, 0xC4, 0xDC, 0xDD, 0xDF)


class InvariantError(AssertionError):
    """A core broke a rule that every input, however hostile, must leave intact."""


class Source(Protocol):
    """Where the generators' choices come from: a fuzzer's bytes or a hypothesis draw."""

    def below(self, n: int) -> int:
        """A choice in ``0 .. n - 1`` (always ``0`` when ``n <= 1``)."""
        ...

    def blob(self, max_size: int) -> bytes:
        """Up to ``max_size`` bytes."""
        ...


class ByteSource:
    """Choices read from a fuzzer's input; an exhausted input always picks the plainest."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def below(self, n: int) -> int:
        """A choice in ``0 .. n - 1``, from as few bytes as ``n`` needs."""
        if n <= 1:
            return 0
        width = ((n - 1).bit_length() + 7) // 8
        chunk = self._data[self._position : self._position + width]
        self._position += width
        return int.from_bytes(chunk, "big") % n

    def blob(self, max_size: int) -> bytes:
        """A length, then that many bytes (fewer when the input runs out)."""
        size = self.below(max_size + 1)
        chunk = self._data[self._position : self._position + size]
        self._position += size
        return chunk


def pick(src: Source, options: Sequence[T]) -> T:
    """One of ``options``; the first when the source has nothing left to say."""
    return options[src.below(len(options))]


def nested(depth: int, opener: bytes = b"\x91") -> bytes:
    """``depth`` one-element arrays (or maps) around a nil: the recursion-depth probe."""
    return opener * depth + b"\xc0"


def encode(value: object) -> bytes:
    """MessagePack of any value, including ``msgspec.Raw`` fragments and wrong-typed fields."""
    return msgspec.msgpack.encode(value)


def cache_sizes() -> str:
    """How full the process-wide caches of verified certificates and commitments are."""
    sizes = [
        f"{len(cache):,}/{cache.maxsize:,}"
        for cache in (credentials.CERTIFICATES, credentials.COMMITMENTS)
    ]
    return " ".join(sizes)


def plausible(schema: msgspec.inspect.Type) -> object:  # noqa: PLR0911 - one per kind
    """The plainest value a schema admits (a guess for patterns: a name, or a currency)."""
    inspect = msgspec.inspect
    match schema:
        case inspect.IntType(ge=ge, gt=gt):
            return ge if ge is not None else gt + 1 if gt is not None else 0
        case inspect.StrType(pattern=pattern):
            return "EUR" if pattern and "{3}" in pattern else "broker"
        case inspect.BytesType(min_length=size):
            return bytes(size or 0)
        case inspect.BoolType():
            return False
        case inspect.LiteralType(values=values):
            return values[0]
        case inspect.StructType(fields=fields):
            return [plausible(field.type) for field in fields]
        case inspect.ListType():
            return []
    return None


def schema_fields(cls: type) -> list[object]:
    """Plausible fields of a wire struct, from its schema alone."""
    fields = plausible(msgspec.inspect.type_info(cls))
    return fields if isinstance(fields, list) else []


def decodes(kind: str, body: bytes) -> bool:
    """Whether a body decodes under the schema its envelope type names."""
    try:
        codec.decode_body(kind, body)
    except MalformedMessageError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Stream:
    """One authenticated way into a core: who seals, with which key, where it is delivered."""

    name: str
    recipient: str
    topic: str
    auth: Auth
    sender: str
    natural: tuple[str, ...]
    """The message types this stream carries in a real flow."""
    key: MacKey | None = None
    signer: AgentKeys | None = None
    ref: bytes = b""
    fresh_commit: bool = False
    """A buyer's first commit: its MAC key and ``ref`` come from the commitment in the body."""

    @property
    def header_recipient(self) -> str:
        """The envelope's ``recipient``: the core, or everybody for a signed broadcast."""
        return BROADCAST if self.auth is Auth.SIGNED else self.recipient


@dataclass(frozen=True, slots=True)
class Expect:
    """What one delivery must produce, beyond the invariants every delivery keeps."""

    rejected: bool = False
    codes: frozenset[str] = frozenset()
    """When not empty: the rejection's error code is one of these."""


ANYTHING: Final = Expect()
REJECTED: Final = Expect(rejected=True)
UNDECODABLE: Final = Expect(
    rejected=True, codes=frozenset({"malformed", "unexpected", "too-large"})
)


class Rig:
    """A broker, two vendors (one on-line), an enrolled buyer and one still enrolling.

    Built deterministically (seeded keys, fixed clock), so the captured traffic is the same
    bytes every time and a saved input replays against the state it first met after a build.
    """

    def __init__(self, chain_length: int = 1_000) -> None:
        world = make_world(vendors=1, buyers=1, record=True)
        world.enroll_vendor(
            "vendor2", replace(default_terms(), online=True, scrip=True, scrip_online=True)
        )
        world.enroll_vendor(SHOP, replace(default_terms(), scrip=True))
        self.world: World = world
        self.broker: BrokerCore = world.broker
        self.buyer: BuyerCore = world.buyers["buyer1"]
        self.vendor1: VendorCore = world.vendors["vendor1"]
        self.vendor2: VendorCore = world.vendors["vendor2"]
        now = world.now
        buyer = self.buyer
        self.cid1 = buyer.open_channel("vendor1", chain_length, now).commitment_id
        world.pump()
        buyer.pay(self.cid1, 12, now, item="article")
        world.pump()
        self.vendor1.redeem_all(now)
        world.pump()
        buyer.pay(self.cid1, 5, now)
        world.pump()
        self.cid2 = buyer.open_channel("vendor2", 100, now).commitment_id
        world.pump()
        buyer.pay(self.cid2, 3, now)
        world.pump()
        self.shop: VendorCore = world.vendors[SHOP]
        self._spend_scrip(world)
        buyer.query_balance(now)
        buyer.query_invoice(now)
        self.broker.publish_revocations(now)
        world.pump()
        token = world.net.open_account(self.broker, "newbie", "buyer", 10_000, "EUR", now)
        self.newbie = BuyerCore(
            "newbie", seeded_identity("newbie"), self.broker.info, random=SeededRandom("newbie")
        )
        self.newbie.enroll(token, now)
        (enroll,) = self.newbie.data_to_send()
        world.net.attach(self.newbie, now)
        world.pump()
        self.log: list[tuple[str, str, bytes]] = [
            *world.net.log,
            ("broker", enroll.topic, enroll.payload),
        ]
        world.net.record = False
        world.net.log.clear()
        self._captured = frozenset(payload for _, _, payload in self.log)
        self.outsider = seeded_identity(MALLORY)
        self.pool = tuple(
            HashChain(hashlib.sha256(b"fuzz pool %d" % n).digest(), 64) for n in range(3)
        )
        self.endpoints: dict[str, Endpoint[Any]] = {
            "broker": self.broker,
            "buyer1": buyer,
            "vendor1": self.vendor1,
            "vendor2": self.vendor2,
            SHOP: self.shop,
            "newbie": self.newbie,
        }
        self.certificates = tuple(core.certificate for core in (buyer, self.vendor1, self.vendor2))
        self.streams = self._streams()
        self.templates = self._templates()
        self.raw_targets = self._raw_targets()
        self.decoders = self._decoders()
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.settle()

    # --- construction ----------------------------------------------------------------------

    def _spend_scrip(self, world: World) -> None:
        """Scrip minted at both scrip vendors, spent once each, deposited, and more bought."""
        buyer, now = self.buyer, world.now
        for vendor in (SHOP, "vendor2"):
            buyer.mint(vendor, 500, now)
            world.pump()
            buyer.pay_scrip(vendor, 5, now, "article")
            world.pump()
        self.shop.deposit_all(now)
        world.pump()
        buyer.mint(SHOP, 300, now)
        world.pump()

    def _streams(self) -> tuple[Stream, ...]:
        buyer, v1, v2, newbie = self.buyer, self.vendor1, self.vendor2, self.newbie
        key1, key2 = buyer.channels[self.cid1].key, buyer.channels[self.cid2].key
        token = newbie.token_key
        if token is None:
            raise InvariantError("the enrolling buyer lost its token key")
        inbox = topics.inbox
        broker_id = self.broker.identity
        to_broker = ("redeem", "register", "balance?", "invoice?", "scrip?", "allowance?")
        to_agent = ("redeemed", "registered", "balance", "invoice", "error", "allowance")
        scrip = tuple(
            stream
            for vendor in (SHOP, "vendor2")
            for ref, secret in [self.scrip_secret(vendor)]
            for stream in (
                Stream(f"buyer1>{vendor} scrip", vendor, inbox(vendor, "buyer1"), Auth.SCRIP,
                       "buyer1", ("scrip-pay",), key=secret, ref=ref),
                Stream(f"{vendor}>buyer1 scrip", "buyer1", inbox("buyer1", vendor), Auth.SCRIP,
                       vendor, ("scrip-paid", "error"), key=secret, ref=ref),
                Stream(f"{vendor}>broker", "broker", inbox("broker", vendor), Auth.PAIR,
                       vendor, ("deposit", *to_broker),
                       key=self.world.vendors[vendor].broker_key),
                Stream(f"broker>{vendor}", vendor, inbox(vendor, "broker"), Auth.PAIR,
                       "broker", ("deposited", *to_agent),
                       key=self.world.vendors[vendor].broker_key),
            )
        )  # fmt: skip
        return (
            *scrip,
            Stream("broker>buyer1 scrip", "buyer1", inbox("buyer1", "broker"), Auth.PAIR,
                   "broker", ("scrip",), key=buyer.broker_key),
            Stream("buyer1>vendor1", "vendor1", inbox("vendor1", "buyer1"), Auth.CHAIN,
                   "buyer1", ("pay", "commit"), key=key1, ref=self.cid1),
            Stream("buyer1>vendor2", "vendor2", inbox("vendor2", "buyer1"), Auth.CHAIN,
                   "buyer1", ("pay", "commit"), key=key2, ref=self.cid2),
            Stream("buyer1>vendor1 commit", "vendor1", inbox("vendor1", "buyer1"), Auth.CHAIN,
                   "buyer1", ("commit",), fresh_commit=True),
            Stream("buyer1>vendor2 commit", "vendor2", inbox("vendor2", "buyer1"), Auth.CHAIN,
                   "buyer1", ("commit",), fresh_commit=True),
            Stream("vendor1>buyer1", "buyer1", inbox("buyer1", "vendor1"), Auth.CHAIN,
                   "vendor1", ("receipt", "error"), key=key1, ref=self.cid1),
            Stream("vendor2>buyer1", "buyer1", inbox("buyer1", "vendor2"), Auth.CHAIN,
                   "vendor2", ("receipt", "error"), key=key2, ref=self.cid2),
            Stream("buyer1>broker", "broker", inbox("broker", "buyer1"), Auth.PAIR,
                   "buyer1", to_broker, key=buyer.broker_key),
            Stream("vendor1>broker", "broker", inbox("broker", "vendor1"), Auth.PAIR,
                   "vendor1", to_broker, key=v1.broker_key),
            Stream("vendor2>broker", "broker", inbox("broker", "vendor2"), Auth.PAIR,
                   "vendor2", to_broker, key=v2.broker_key),
            Stream("newbie>broker", "broker", inbox("broker", "newbie"), Auth.TOKEN,
                   "newbie", ("enroll",), key=token),
            Stream("broker>vendor1", "vendor1", inbox("vendor1", "broker"), Auth.PAIR,
                   "broker", to_agent, key=v1.broker_key),
            Stream("broker>vendor2", "vendor2", inbox("vendor2", "broker"), Auth.PAIR,
                   "broker", to_agent, key=v2.broker_key),
            Stream("broker>buyer1", "buyer1", inbox("buyer1", "broker"), Auth.PAIR,
                   "broker", to_agent, key=buyer.broker_key),
            Stream("broker>newbie", "newbie", inbox("newbie", "broker"), Auth.TOKEN,
                   "broker", ("enrolled", "error"), key=token),
            Stream("vendor1*offer>buyer1", "buyer1", topics.public("vendor1", "offer"),
                   Auth.SIGNED, "vendor1", ("offer",), signer=v1.identity),
            *(
                Stream(f"broker*{kind}>{reader}", reader, topics.public("broker", kind),
                       Auth.SIGNED, "broker", (kind,) if kind in MESSAGE_TYPES else KINDS,
                       signer=broker_id)
                for kind in get_args(topics.PublicKind) if kind != "offer"
                for reader in ("vendor1", "buyer1")
            ),
        )  # fmt: skip

    def scrip_secret(self, vendor: str) -> tuple[bytes, MacKey]:
        """The ``ref`` and customer secret of the buyer's scrip at ``vendor``."""
        refs = [held.ref for held in self.buyer.scrip.values() if held.scrip.vendor == vendor]
        if not refs:
            raise InvariantError(f"the rig's buyer holds no scrip at {vendor}")
        return refs[0], MacKey(self.buyer.scrip_secrets[vendor, refs[0]])

    def _templates(self) -> dict[str, list[object]]:
        """One valid body of every message type, as its fields, to tamper with.

        Types without a hand-written body (newer than this rig) get one from their schema.
        """
        buyer, newbie, broker = self.buyer, self.newbie.identity, self.broker.info
        first = buyer.channels[self.cid1]
        proof_data = credentials.enroll_proof_data(
            "newbie", "broker", newbie.sign_key, newbie.agree_key
        )
        templates: dict[str, Wire] = {
            "enroll": EnrollRequest(
                newbie.sign_key, newbie.agree_key, newbie.sign(TAG_ENROLL_PROOF, proof_data)
            ),
            "enrolled": Enrolled(buyer.certificate),
            "identity": BrokerIdentity(broker.id, broker.sign_key, broker.agree_key),
            "offer": buyer.offers["vendor1"].offer,
            "commit": Commit(first.commitment),
            "pay": Payment(self.cid1, 18, first.chain.word(18), "article"),
            "receipt": Receipt(self.cid1, 17, 17),
            "redeem": Redeem(first.commitment, 17, first.chain.word(17)),
            "redeemed": Redeemed(self.cid1, 12, 12),
            "register": Register(buyer.channels[self.cid2].commitment),
            "registered": Registered(self.cid2, approved=True),
            "balance?": BalanceQuery(),
            "balance": Balance("buyer1", "EUR", 12, 0, 100),
            "invoice?": InvoiceQuery(),
            "invoice": Invoice("buyer1", "EUR", [InvoiceLine("vendor1", 12, 12)], 12),
            "revocations": RevocationList("broker", 1, self.now_ms, []),
            "error": Error("payment", "index 3 not above the last accepted 5"),
        }
        for _, _, payload in self.log:  # the rest as they crossed the wire in the flow
            header = envelope.parse(payload).header
            if header.type not in templates:
                templates[header.type] = codec.decode_body(header.type, header.body)
        fields = {kind: list(msgspec.structs.astuple(body)) for kind, body in templates.items()}
        for kind, cls in MESSAGE_TYPES.items():
            fields.setdefault(kind, schema_fields(cls))
        return fields

    def _raw_targets(self) -> tuple[tuple[str, str], ...]:
        """Every (core, topic) a stranger could publish to, plus some that are not topics."""
        names = sorted(self.endpoints)
        targets = {(recipient, topic) for recipient, topic, _ in self.log}
        for recipient in names:
            targets.update((recipient, topics.inbox(recipient, peer)) for peer in names)
            targets.add((recipient, topics.inbox(recipient, "mallory")))
            for odd in ("", "micropay/v1/in", "micropay/v2/in/x/y", "micropay/v1/in/a/b/c"):
                targets.add((recipient, odd))
            targets.add((recipient, topics.public("broker", "revocations")))
            targets.add((recipient, topics.public("vendor1", "offer")))
            targets.add((recipient, topics.public("broker", "offer")))
        return tuple(sorted(targets))

    def _decoders(self) -> tuple[tuple[str, Callable[[bytes], object]], ...]:
        """Every function that turns untrusted bytes into structure, by name."""
        info = self.broker.info

        def verify_certificate(data: bytes) -> object:
            return credentials.verify_certificate(data, info.sign_key, info.id, self.now)

        def verify_commitment(data: bytes) -> object:
            return credentials.verify_commitment(data, info.sign_key, info.id, self.now, "vendor1")

        def parse_and_open(data: bytes) -> object:
            return envelope.open_body(envelope.parse(data))

        return (
            ("envelope.parse", envelope.parse),
            ("envelope.open_body", parse_and_open),
            *((f"decode_body[{kind}]", partial(codec.decode_body, kind)) for kind in KINDS),
            ("decode_signed", codec.decode_signed),
            ("decode_certificate", codec.decode_certificate),
            ("decode_commitment", codec.decode_commitment),
            ("verify_certificate", verify_certificate),
            ("verify_commitment", verify_commitment),
        )

    # --- time and bookkeeping --------------------------------------------------------------

    @property
    def now(self) -> float:
        """The rig's clock (the world's)."""
        return self.world.now

    @property
    def now_ms(self) -> int:
        """The clock in the envelopes' milliseconds."""
        return int(self.world.now * 1000)

    def tick(self, seconds: float) -> None:
        """Let time pass (a long run moves the clock so replay windows and expiry move too)."""
        self.world.now += seconds

    def run_timers(self) -> None:
        """Fire every core's timer, as the agent loop does, and deliver what that sends."""
        for endpoint in self.endpoints.values():
            if isinstance(endpoint, BrokerCore | VendorCore | BuyerCore):
                endpoint.handle_timer(self.now)
        self.settle()

    def settle(self) -> None:
        """Deliver what the cores queued, drop the recorded events, check the books."""
        net = self.world.net
        net.pump(self.now)
        net.ledger_events(self.broker.account)
        net.events.clear()
        net.dropped.clear()
        self.check_books()

    def money(self) -> tuple[object, ...]:
        """Everything that is worth money: chain positions and every ledger total."""
        totals = self.broker.totals

        def nonzero(table: dict[str, int]) -> dict[str, int]:
            return {account: amount for account, amount in table.items() if amount}

        return (
            [
                {cid: (s.index, s.word, s.redeemed) for cid, s in vendor.chains.items()}
                for vendor in self.world.vendors.values()
            ],
            [
                {n: (r.generation, r.price, r.change) for n, r in vendor.spent_scrip.items()}
                for vendor in self.world.vendors.values()
            ],
            {
                serial: (r.generation, r.credited, r.outstanding, r.returned)
                for serial, r in self.broker.scrip.records.items()
            },
            {c: (r.index, r.word, r.amount, r.reserved) for c, r in self.broker.chains.items()},
            nonzero(totals.debited),
            nonzero(totals.credited),
            nonzero(totals.reserved),
            {cid: (c.spent, c.acknowledged) for cid, c in self.buyer.channels.items()},
        )

    def check_books(self) -> None:
        """The broker's books balance and every total fits the wire; no chain runs past its end."""
        totals = self.broker.totals
        if sum(totals.debited.values()) != sum(totals.credited.values()):
            raise InvariantError("debits and credits differ")
        for table in (totals.debited, totals.credited, totals.reserved):
            for account, amount in table.items():
                if not 0 <= amount <= MAX_COUNT:
                    raise InvariantError(f"{account}'s total {amount} is outside Count")
        self.check_scrip()
        for cid, record in self.broker.chains.items():
            if not 0 <= record.index <= record.length:
                raise InvariantError(f"broker chain {cid.hex()} at {record.index}")
        for vendor in self.world.vendors.values():
            for cid, state in vendor.chains.items():
                if not 0 <= state.index <= state.verified.commitment.length:
                    raise InvariantError(f"vendor chain {cid.hex()} at {state.index}")

    def check_scrip(self) -> None:
        """No serial pays out more than it was minted for."""
        for serial, scrip in self.broker.scrip.records.items():
            spent = (scrip.credited, scrip.returned)
            if min(spent) < 0 or sum(spent) > scrip.scrip.value:
                raise InvariantError(f"scrip {serial} paid out {spent} of {scrip.scrip.value}")

    # --- the surfaces ----------------------------------------------------------------------

    def decode_everywhere(self, data: bytes) -> None:
        """Feed bytes to every decoder; each must decode or raise a remote protocol error."""
        for _, decode in self.decoders:
            try:
                decode(data)
            except RemoteProtocolError as error:
                self.errors[type(error).__name__] += 1
                self.outcomes["decoder refused"] += 1
            else:
                self.outcomes["decoder accepted"] += 1

    def deliver(
        self, recipient: str, topic: str, payload: bytes, expect: Expect = ANYTHING
    ) -> list[object]:
        """Hand one message to a core and check everything a hostile message must not break."""
        core = self.world.net.cores[recipient]
        before = self.money()
        events = list(core.receive(topic, payload, self.now))
        for event in events:
            if type(event).__module__ not in ("protocol.events", "protocol.broker_events"):
                raise InvariantError(f"{recipient} reported a {type(event).__name__}")
        rejections = [e for e in events if isinstance(e, MessageRejected)]
        for rejection in rejections:
            if not isinstance(rejection.error, RemoteProtocolError):
                raise InvariantError(f"rejection carries a {type(rejection.error).__name__}")
            self.errors[type(rejection.error).__name__] += 1
        if rejections:
            self.outcomes["rejected"] += 1
            # The broker records a refused redemption or registration in its ledger (the
            # evidence); nothing else may come with a rejection.
            others = [e for e in events if not isinstance(e, LEDGERED_REFUSALS)]
            if len(rejections) != 1 or others:
                raise InvariantError(f"a rejection came with other events: {events}")
            if self.money() != before:
                raise InvariantError(f"rejected input changed the money: {rejections[0]}")
            code = rejections[0].error.code
            if expect.codes and code not in expect.codes:
                raise InvariantError(f"expected {sorted(expect.codes)}, got {code!r}")
        else:
            self.outcomes["accepted" if events else "ignored"] += 1
            if expect.rejected:
                raise InvariantError(f"{recipient} did not reject it: {events}")
        self.settle()
        return events

    def raw(self, target: int, payload: bytes) -> None:
        """Unauthenticated bytes on some topic: always exactly one rejection."""
        recipient, topic = self.raw_targets[target % len(self.raw_targets)]
        replayed = payload in self._captured  # a retained broadcast may come again, harmlessly
        self.deliver(recipient, topic, payload, ANYTHING if replayed else REJECTED)

    def mutated(self, src: Source) -> None:
        """A captured envelope, bit-flipped, cut, grown or spliced: always rejected."""
        recipient, topic, payload = pick(src, self.log)
        others = [entry[2] for entry in self.log]
        changed = mutate(src, payload, others)
        if changed != payload:
            self.deliver(recipient, topic, changed, REJECTED)

    def sealed(self, stream: int, kind: int, body: bytes) -> None:
        """Raw body bytes in an envelope with a correct MAC or signature, fresh counter."""
        chosen = self.streams[stream % len(self.streams)]
        self.deliver_sealed(chosen, KINDS[kind % len(KINDS)], body, ByteSource(b""), 0)

    def forged(self, src: Source) -> None:
        """A structure-aware hostile body, sealed as an authenticated peer would seal it."""
        forge = Forge(self, src)
        stream = pick(src, self.streams)
        kind = pick(src, stream.natural) if src.below(4) else pick(src, KINDS)
        body = forge.body(kind, stream)
        flags = src.below(64) if src.below(8) == 0 else 0
        self.deliver_sealed(stream, kind, body, src, flags)

    def run(self, data: bytes) -> str:
        """One fuzzer input: the first byte picks the surface, the rest drives it."""
        if not data:
            return "empty"
        surface = SURFACES[data[0] % len(SURFACES)]
        rest = data[1:]
        match surface:
            case "decoders":
                self.decode_everywhere(rest)
            case "raw":
                self.raw(rest[0] if rest else 0, rest[1:])
            case "mutated":
                self.mutated(ByteSource(rest))
            case "sealed":
                self.sealed(rest[0] if rest else 0, rest[1] if len(rest) > 1 else 0, rest[2:])
            case _:
                self.forged(ByteSource(rest))
        return surface

    # --- sealing ---------------------------------------------------------------------------

    def deliver_sealed(
        self, stream: Stream, kind: str, body: bytes, src: Source, flags: int
    ) -> None:
        """Seal ``body`` on ``stream`` (``flags`` spoil it on purpose) and deliver it."""
        payload, topic = self.seal(stream, kind, body, src, flags)
        spoiled = flags & 0b110000 or (flags & 0b10 and stream.auth is not Auth.SIGNED)
        live = stream.recipient != "newbie" or self.newbie.token_key is not None
        if spoiled:
            expect = REJECTED
        elif not flags and live and not stream.fresh_commit and not decodes(kind, body):
            expect = UNDECODABLE
        else:
            expect = ANYTHING
        self.deliver(stream.recipient, topic, payload, expect)

    def seal(
        self, stream: Stream, kind: str, body: bytes, src: Source, flags: int
    ) -> tuple[bytes, str]:
        """The envelope and the topic to deliver it on.

        Flags: 1 replayed or far counter, 2 stale timestamp, 4 odd correlation id, 8 odd
        ``ref``, 16 delivered on another topic than the one sealed, 32 a header field changed.
        """
        ref, key = stream.ref, stream.key
        if stream.fresh_commit:
            ref, key = self._commit_stream(stream, body)
        sender = self.endpoints[stream.sender]
        counter = sender._counter.next(stream.header_recipient, stream.auth, ref, self.now)
        fields: list[object] = [
            PROTOCOL_VERSION,
            kind,
            stream.sender,
            stream.header_recipient,
            ref,
            counter,
            self.now_ms,
            b"",
            body,
        ]
        if flags & 1:  # far ahead only on an odd ``ref``: it would end the stream's window
            far = (MAX_COUNT, counter + 5_000) if flags & 8 else ()
            fields[5] = pick(src, (counter - 1, counter - 2_000, 0, *far))
        if flags & 2:
            fields[6] = pick(src, (self.now_ms - 121_000, self.now_ms + 121_000, 0, MAX_COUNT))
        if flags & 4:
            fields[7] = src.blob(20)
        if flags & 8:  # a stream of its own: never the stream's real ``ref``
            odd = src.blob(40)
            fields[4] = odd + b"\x00" if odd == ref else odd
        if flags & 32:
            position = pick(src, (0, 1, 2, 3))
            fields[position] = pick(src, ((0, 2, -1), ("x" * 17,), ("Bad Name", "buyer9"),
                                          ("someone", "", "y" * 65))[position])  # fmt: skip
        if stream.signer is None and key is None:
            raise InvariantError(f"stream {stream.name} has neither key nor signer")
        header = Header(*fields)  # type: ignore[arg-type]
        payload = seal_header(stream.topic, stream.auth, header, key=key, signer=stream.signer)
        topic = stream.topic
        if flags & 16:
            others = [t for _, t in self.raw_targets if t != stream.topic]
            topic = pick(src, others)
        return payload, topic

    def _commit_stream(self, stream: Stream, body: bytes) -> tuple[bytes, MacKey]:
        """The ``ref`` and chain key a buyer would use to send this commit."""
        try:
            commit = codec.decode_body("commit", body)
            if not isinstance(commit, Commit):
                raise InvariantError("decode_body returned another type")
            signed = codec.decode_signed(commit.commitment)
        except MalformedMessageError:
            return bytes(32), MacKey(bytes(32))
        cid = credentials.commitment_id(signed.body)
        vendor = self.world.vendors[stream.recipient]
        agree_key = vendor.identity.agree_key
        return cid, chain_mac_key(self.buyer.identity, "buyer1", vendor.account, agree_key, cid)

    # --- seeds for a coverage-guided fuzzer ------------------------------------------------

    def seeds(self) -> list[bytes]:
        """Inputs that start every surface from real traffic."""
        out: list[bytes] = []
        targets = {target: n for n, target in enumerate(self.raw_targets)}
        by_place = {(s.recipient, s.topic, s.auth): n for n, s in enumerate(self.streams)}
        for recipient, topic, payload in self.log:
            out.append(bytes([SURFACES.index("decoders")]) + payload)
            out.append(bytes([SURFACES.index("raw"), targets[recipient, topic] % 256]) + payload)
            parsed = envelope.parse(payload)
            stream = by_place.get((recipient, topic, parsed.auth))
            if stream is not None and parsed.header.type in KINDS:
                kind = KINDS.index(parsed.header.type)
                out.append(bytes([SURFACES.index("sealed"), stream, kind]) + parsed.header.body)
                out.append(bytes([SURFACES.index("decoders")]) + parsed.header.body)
        for n in range(64):
            noise = hashlib.sha256(b"seed %d" % n).digest()
            out.append(bytes([SURFACES.index("mutated")]) + noise)
            out.append(bytes([SURFACES.index("forged")]) + noise)
        return out


def mutate(src: Source, data: bytes, others: Sequence[bytes]) -> bytes:
    """One to four byte-level edits: flips, overwrites, cuts, growth, splices."""
    out = bytearray(data)
    for _ in range(1 + src.below(4)):
        position = src.below(len(out) + 1)
        match src.below(8):
            case 0 if out:
                out[min(position, len(out) - 1)] ^= 1 << src.below(8)
            case 1 if out:
                out[min(position, len(out) - 1)] = src.below(256)
            case 2:
                del out[position:]
            case 3:
                out += src.blob(64)
            case 4:
                out[position:position] = src.blob(16)
            case 5:
                del out[position : position + 1 + src.below(16)]
            case 6 if others:
                other = pick(src, others)
                out = out[:position] + other[src.below(len(other) + 1) :]
            case _ if out:
                out[min(position, len(out) - 1)] = pick(src, INTERESTING_BYTES)
    return bytes(out)


Alternatives = Sequence[object] | Callable[[], object]
"""What a field may be instead of its valid value: a few values, or a way to make one."""


class Forge:
    """Hostile values, bodies and signed objects; every choice comes from a ``Source``.

    Objects start valid and get one to three fields tampered with, because a single wrong
    field behind a good signature is what reaches the deepest checks. The rig's private
    keys make the forgeries authentic where that matters: certificates signed by the broker,
    commitments signed by the enrolled buyer, paywords from real chains.
    """

    def __init__(self, rig: Rig, src: Source) -> None:
        self.rig = rig
        self.src = src

    # --- scalars ---------------------------------------------------------------------------

    def integer(self) -> int:
        """Boundaries, anything in MessagePack's range, small values, or timestamps."""
        src = self.src
        match src.below(4):
            case 0:
                return pick(src, INTS)
            case 1:
                return src.below(2**64 + 2**63) - 2**63
            case 2:
                return src.below(2_000) - 1_000
            case _:
                return self.rig.now_ms + src.below(2_000_000_000) - 1_000_000_000

    def text(self) -> str:
        """Names, boundary lengths, and arbitrary characters."""
        src = self.src
        match src.below(4):
            case 0:
                return pick(src, STRINGS)
            case 1:
                return "A" * pick(src, LENGTHS)
            case 2:
                return src.blob(80).decode("utf-8", "replace")
            case _:
                return src.blob(80).decode("latin-1")

    def data(self) -> bytes:
        """Boundary lengths, noise, signed objects the rig holds, or a key."""
        src = self.src
        match src.below(4):
            case 0:
                return bytes(pick(src, LENGTHS))
            case 1:
                return src.blob(96)
            case 2:
                return pick(src, self.rig.certificates)
            case _:
                return self.key()

    def key(self, *real: bytes) -> bytes:
        """A 32-byte field: noise, a real key, a low-order point, or the wrong size."""
        src = self.src
        if src.below(3) == 0:
            return pick(src, (*real, *LOW_ORDER_X25519, bytes(31), bytes(33), b""))
        return src.blob(32).ljust(32, b"\x00")

    def value(self, depth: int = 0) -> object:  # noqa: C901, PLR0911 - one case per kind
        """Any MessagePack value: scalars, odd encodings, deep nesting, long arrays, maps."""
        src = self.src
        match src.below(12 if depth < 3 else 8):
            case 0:
                return None
            case 1:
                return bool(src.below(2))
            case 2:
                return self.integer()
            case 3:
                return pick(src, FLOATS)
            case 4:
                return self.text()
            case 5:
                return self.data()
            case 6:
                return msgspec.Raw(pick(src, ODDITIES))
            case 7:
                return msgspec.Raw(nested(pick(src, DEPTHS), pick(src, (b"\x91", b"\x81\xc0"))))
            case 8:
                return [self.value(depth + 1) for _ in range(src.below(5))]
            case 9:
                keys: tuple[object, ...] = (None, self.integer(), self.text(), self.data())
                return {pick(src, keys): self.value(depth + 1) for _ in range(src.below(4))}
            case 10:
                return msgspec.msgpack.Ext(src.below(256) - 128, src.blob(16))
            case _:
                return [pick(src, (None, 0, "", b""))] * pick(src, LENGTHS)

    def tamper(self, valid: list[object], alternatives: Sequence[Alternatives]) -> list[object]:
        """The valid fields, with a few replaced: by a plausible wrong value, or any value."""
        src = self.src
        out = list(valid)
        for _ in range(pick(src, (0, 1, 1, 1, 2, 3)) if out else 0):
            position = src.below(len(out))
            options = alternatives[position]
            match src.below(6):
                case 0:
                    out[position] = self.integer()
                case 1:
                    out[position] = self.value()
                case _ if callable(options):
                    out[position] = options()
                case _ if options:
                    out[position] = pick(src, options)
        match src.below(12):
            case 0:
                del out[src.below(len(out)) :]
            case 1:
                out.append(self.value())
        return out

    # --- signed objects --------------------------------------------------------------------

    def certificate(self) -> bytes:
        """``Signed`` certificate bytes: real, garbage, or forged and signed by the broker."""
        src, rig = self.src, self.rig
        real = rig.buyer.certified
        match src.below(6):
            case 0:
                return pick(src, rig.certificates)
            case 1:
                return self.data()
        if real is None:
            raise InvariantError("the rig's buyer is not enrolled")
        buyer, newbie = rig.buyer.identity, rig.newbie.identity
        fields = self.tamper(
            list(msgspec.structs.astuple(real)),
            (
                (1, 999, 0, MAX_COUNT),
                ("newbie", "vendor1", "mallory", "broker"),
                ("vendor", "broker", ""),
                lambda: self.key(newbie.sign_key, buyer.agree_key),
                lambda: self.key(newbie.agree_key, buyer.sign_key),
                (0, MAX_COUNT, 2**64 - 1),
                ("USD", "eur", "EU"),
                (rig.now_ms + 1_000_000, 0, MAX_COUNT),
                (rig.now_ms - 1, real.not_before, MAX_COUNT),
                ("other", "buyer1", ""),
                lambda: self.key(newbie.sign_key, rig.broker.info.sign_key),  # issuer_key
            ),
        )
        body = encode(fields) if src.below(8) else encode(self.value())
        signer = rig.broker.identity if src.below(6) else rig.outsider
        return credentials.sign_object(signer, TAG_CERTIFICATE, body)

    def commitment(self, vendor: str) -> tuple[bytes, PaywordChain | None]:
        """``Signed`` commitment bytes for ``vendor``, and the chain behind them if known."""
        src, rig = self.src, self.rig
        match src.below(6):
            case 0:
                channel = rig.buyer.channels[pick(src, (rig.cid1, rig.cid2))]
                return channel.commitment, channel.chain
            case 1:
                return self.data(), None
        chain = pick(src, rig.pool)
        certified = rig.buyer.certified
        cert_end = certified.not_after if certified else 0
        now_ms = rig.now_ms
        fields = self.tamper(
            [vendor, rig.buyer.certificate, chain.root, chain.length, 1, "EUR", now_ms,
             now_ms + 3_600_000],
            (
                ("vendor1", "vendor2", "broker", "buyer1"),
                self.certificate,
                lambda: self.key(rig.pool[0].root),
                (1, 1_000, 1_000_000, 1_000_001, 2**32 - 1, 2**32, 0),
                (2, 2**40, 2**62, MAX_COUNT, 0),
                ("USD", "eur"),
                (now_ms - 3_600_000, now_ms + 3_600_000, 0, cert_end + 1),
                (now_ms - 1, cert_end, cert_end + 1, MAX_COUNT),
            ),
        )  # fmt: skip
        body = encode(fields) if src.below(8) else encode(self.value())
        signer = rig.buyer.identity if src.below(6) else rig.newbie.identity
        return credentials.sign_object(signer, TAG_COMMITMENT, body), chain

    # --- bodies ----------------------------------------------------------------------------

    def payment(self, chain: PaywordChain | None, held: int, jump: int) -> tuple[object, object]:
        """The next index (or a near or absurd one) and, mostly, the chain's word for it."""
        src = self.src
        length = chain.length if chain else 64
        index: object = held + 1
        if src.below(2):
            index = pick(src, (
                held + 1 + src.below(jump), held + jump, held + jump + 1, held, held - 1,
                length, length + 1, 0, 2**32 - 1, 2**32,
            ))  # fmt: skip
        if not src.below(8):
            index = self.value()
        if chain and isinstance(index, int) and 0 <= index <= length and src.below(6):
            return index, chain.word(index)
        return index, self.key()

    def fields(self, kind: str, stream: Stream) -> list[object]:  # noqa: C901, PLR0911, PLR0912
        """The fields of one message type on one stream, valid or nearly so."""
        src, rig = self.src, self.rig
        channel = rig.buyer.channels.get(stream.ref)
        vendor = rig.world.vendors.get(stream.recipient)
        state = vendor.chains.get(stream.ref) if vendor else None
        cid = stream.ref or rig.cid1
        cids: tuple[object, ...] = (rig.cid1, rig.cid2, bytes(32), b"")
        match kind:
            case "pay":
                held = state.index if state else 17
                jump = vendor.terms.max_jump if vendor else 100
                index, word = self.payment(channel.chain if channel else None, held, jump)
                return self.tamper([cid, index, word, "article"], (cids, (), (), ("", "x" * 257)))
            case "commit":
                return [self.commitment(stream.recipient)[0]]
            case "register":
                return [self.commitment(stream.sender)[0]]
            case "redeem":
                signed, chain = self.commitment(stream.sender)
                held = rig.broker.chains[rig.cid1].index if chain is rig.pool[0] else 0
                index, word = self.payment(chain, held, 64)
                return [signed, index, word]
            case "receipt":
                spent = channel.spent if channel else 0
                return self.tamper(
                    [cid, spent, spent], (cids, (spent + 1, 0, 2**32), (0, 2**64 - 1))
                )
            case "redeemed":
                done, held = (state.redeemed, state.index) if state else (0, 0)
                return self.tamper(
                    [cid, held, held], (cids, (done, held + 1, 2**32 - 1), (0, MAX_COUNT))
                )
            case "registered":
                pending = (*rig.vendor2._pending, rig.cid2)
                return self.tamper([pick(src, pending), True, ""], (cids, (False,), ("x" * 300,)))
            case "enroll":
                newbie = rig.newbie.identity
                sign_key = self.key(newbie.sign_key) if src.below(4) == 0 else newbie.sign_key
                agree_key = self.key(newbie.agree_key) if src.below(3) == 0 else newbie.agree_key
                proof_data = credentials.enroll_proof_data("newbie", "broker", sign_key, agree_key)
                proof = newbie.sign(TAG_ENROLL_PROOF, proof_data) if src.below(4) else self.data()
                return [sign_key, agree_key, proof]
            case "enrolled":
                return [self.certificate()]
            case "identity":
                info = rig.broker.info
                return self.tamper(
                    [info.id, info.sign_key, info.agree_key],
                    (("vendor1",), self.key, self.key),
                )
            case "scrip-pay":
                item = ("", "minute", "x" * 257)
                price = (0, 1, 300, 496, 501, MAX_COUNT)
                return self.tamper([self.scrip(stream.recipient), "article", 5], ((), item, price))
            case "offer":
                return self.offer()
            case "revocations":
                return self.revocations()
            case "balance" | "invoice" | "error" | "balance?" | "invoice?":
                template = rig.templates[kind]
                return self.tamper(template, [self.either_scalar] * len(template))
        known = rig.templates.get(kind)
        if known is None:
            return [self.value() for _ in range(src.below(4))]
        return self.tamper(known, [self.alternatives(value) for value in known])

    def alternatives(self, value: object) -> Alternatives:
        """Wrong values of the same kind as ``value``, for types without their own forgery."""
        match value:
            case bool():
                return (not value,)
            case int():
                return INTS
            case str():
                return STRINGS
            case bytes():
                return self.key
            case list():
                return ([], [self.value()] * 4097)
        return ()

    def either_scalar(self) -> object:
        """An integer at a boundary, a long list of lines, or odd text."""
        src = self.src
        match src.below(3):
            case 0:
                return self.integer()
            case 1:
                return [["vendor1", 1, 1]] * pick(src, (2, 4096, 4097))
            case _:
                return self.text()

    def scrip(self, vendor: str) -> bytes:
        """``TaggedScrip`` bytes for ``vendor``: held, foreign, or tampered and tagged anew.

        Retagging under the vendor's real scrip key (which only the vendor and the broker
        hold) lets the checks after the tag see a scrip the tag does not refuse.
        """
        src, rig = self.src, self.rig
        held = sorted(rig.buyer.scrip.values(), key=lambda h: h.scrip.serial)
        mine = [h for h in held if h.scrip.vendor == vendor] or held
        real = pick(src, mine)
        match src.below(5):
            case 0:
                return real.tagged
            case 1:
                return pick(src, held).tagged
            case 2:
                return self.data()
        fields = list(msgspec.structs.astuple(real.scrip))
        properties: tuple[list[str], ...] = (
            [],
            ["k=v"] * 9,
            ["k=" + "v" * 63],
            [""],
        )  # the tag is on the body's size
        body = encode(
            self.tamper(
                fields,
                [properties if isinstance(v, list) else self.alternatives(v) for v in fields],
            )
        )
        core = rig.world.vendors.get(real.scrip.vendor, rig.shop)
        broker = rig.broker
        shared = pair_key(broker.identity, broker.account, core.identity.agree_key, core.account)
        key = MacKey(scrip_key(shared, real.scrip.vendor, real.scrip.period))
        return encode(TaggedScrip(body, key.tag(TAG_SCRIP, body)))

    def offer(self) -> list[object]:
        """A vendor's offer: its real certificate (mostly) and tampered terms."""
        src, rig = self.src, self.rig

        def items() -> object:
            return [[self.text(), self.integer()] for _ in range(pick(src, (1, 256, 257)))]

        return self.tamper(
            rig.templates["offer"],
            (
                (*rig.certificates, rig.vendor2.certificate),
                (0, 2, MAX_COUNT),
                ("USD", "eur"),
                (1, MAX_COUNT, 0),
                (1, MAX_COUNT, 0),
                (True,),
                (rig.now_ms - 1, MAX_COUNT, 0),
                items,
                (True, False, 1),  # scrip
                (True, False, 1),  # allowance
            ),
        )

    def revocations(self) -> list[object]:
        """A revocation list; the enrolled buyer's own serial only now and then."""
        src, rig = self.src, self.rig
        certified = rig.buyer.certified
        serial = certified.serial if certified else 1

        def serials() -> object:
            if src.below(2):
                return pick(src, ([], [0], [-1], [serial], [2**64 - 1]))
            return list(range(1_000, 1_000 + pick(src, (1_000, 10_000, 20_000))))

        return self.tamper(
            ["broker", rig.now_ms, rig.now_ms, [999]],
            (("vendor1", ""), (0, MAX_COUNT, -1), (0, MAX_COUNT), serials),
        )

    def body(self, kind: str, stream: Stream) -> bytes:
        """Body bytes: mostly structured, sometimes misshapen, sometimes noise."""
        src = self.src
        match src.below(10):
            case 7:
                return encode(self.value())
            case 8:
                return pick(src, (src.blob(600), pick(src, ODDITIES), nested(pick(src, DEPTHS))))
            case 9:
                template = encode(self.fields(kind, stream))
                return mutate(src, template, [template])
        return encode(self.fields(kind, stream))
