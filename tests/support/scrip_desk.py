"""``scrip?`` and ``deposit`` sealed by hand at the in-memory broker, for its own tests.

The honest cores mint and deposit by themselves (tests/protocol/test_scrip_flows.py and the
agents' end-to-end tests). The broker's tests also need what no honest core sends: a mint
asked by a vendor, a request id chosen by the test, a deposit of a forged, inflated or
foreign scrip. So they seal those on the parties' real pair-key streams and read the
broker's answers back through the envelope's MAC.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from protocol import topics
from protocol.buyer import BuyerCore
from protocol.codec import decode_scrip, decode_tagged_scrip
from protocol.crypto import pair_key
from protocol.envelope import Auth, open_body, parse, verify_mac
from protocol.errors import MalformedMessageError
from protocol.messages import Body, Deposit, MintRequest, Scrip
from protocol.scrip import make_change, scrip_key
from protocol.vendor import VendorCore
from tests.support.world import World


@dataclass
class ScripDesk:
    """Sends as any enrolled buyer or vendor, and reads what the broker answered."""

    world: World
    events: list[object] = field(default_factory=list)
    _requests: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def party(self, name: str) -> BuyerCore | VendorCore:
        return self.world.buyers.get(name) or self.world.vendors[name]

    def ask(self, sender: str, body: Body, corr: bytes = b"") -> Body:
        """Send ``body`` to the broker on ``sender``'s pair-key stream; its one answer."""
        core = self.party(sender)
        broker = self.world.broker
        core.send(
            broker.account, body, self.world.now, auth=Auth.PAIR, key=core.broker_key, corr=corr
        )
        (out,) = core.data_to_send()
        self.events = list(
            self.world.net.inject(broker.account, out.topic, out.payload, self.world.now)
        )
        inbox = topics.inbox(sender, broker.account)
        (answer,) = [o for o in broker.data_to_send() if o.topic == inbox]
        parsed = parse(answer.payload)
        verify_mac(parsed, inbox, core.broker_key)
        assert parsed.header.corr == corr
        return open_body(parsed)

    def request_id(self) -> bytes:
        return next(self._requests).to_bytes(16, "big")

    def mint(self, buyer: str, vendor: str, value: int, request: bytes | None = None) -> Body:
        request = request or self.request_id()
        return self.ask(buyer, MintRequest(vendor, value, request), corr=request)

    def deposit(  # noqa: PLR0913 - the Deposit's fields
        self,
        vendor: str,
        spent: bytes,
        price: int,
        change: bytes,
        item: str = "",
        claim: bytes = b"",
    ) -> Body:
        try:
            scrip = scrip_of(spent)
            corr = scrip.serial.to_bytes(8, "big") + scrip.generation.to_bytes(4, "big")
        except MalformedMessageError:
            corr = b""
        return self.ask(vendor, Deposit(spent, item, price, change, claim), corr=corr)

    def pair_secret(self, name: str) -> bytes:
        """The pair key ``name`` shares with the broker, as ``name`` derives it."""
        core = self.party(name)
        broker = self.world.broker.info
        return pair_key(core.identity, name, broker.agree_key, broker.id)

    def vendor_key(self, vendor: str, period: int) -> bytes:
        """The scrip key of ``period`` as the vendor derives it."""
        return scrip_key(self.pair_secret(vendor), vendor, period)

    def pay(self, vendor: str, tagged: bytes, price: int) -> bytes:
        """What the vendor does on a payment: the change's bytes (empty when used up)."""
        spent = scrip_of(tagged)
        change = make_change(spent, price, self.vendor_key(vendor, spent.period))
        return b"" if change is None else change[1]


def scrip_of(tagged: bytes) -> Scrip:
    """The body of ``TaggedScrip`` bytes."""
    return decode_scrip(decode_tagged_scrip(tagged).body)
