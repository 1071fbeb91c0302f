"""The vendor's side of Millicent scrip: keys per period, the payment rules, the spent set.

A scrip payment is checked with two MACs (the envelope's, under the customer secret the
vendor derives from the buyer's id, and the scrip's tag), then recorded durably before it
is served: one record per serial, its highest generation spent (docs/SCHEMES.md 3.8, 3.9).
Records are deposited at the broker on a timer, retried with backoff until confirmed (or
refused for good), and forgotten at the serial's deadline. An on-line vendor deposits first
and serves on the broker's answer instead, so the broker's ledger is its spent set: it
serves only on a credit of its own deposit (its claim), and keeps a payment whose answer
is late pending until the broker answers (3.9). A restored vendor asks the broker about
every record it holds before it takes a further generation of that serial (3.9): its
store may be older than the broker's ledger.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from protocol.codec import decode_scrip, decode_tagged_scrip
from protocol.crypto import AgentKeys, MacKey, pair_key
from protocol.endpoint import BrokerInfo
from protocol.envelope import Auth, Parsed
from protocol.errors import (
    AuthenticationError,
    ItemError,
    RemoteProtocolError,
    ScripError,
    UnexpectedMessageError,
)
from protocol.events import (
    ScripAccepted,
    ScripDepositConfirmed,
    ScripDepositRefused,
    ScripForgotten,
    ScripRepeatAnswered,
    StateBehind,
    VendorEvent,
)
from protocol.messages import (
    CLAIM_SIZE,
    Body,
    Deposit,
    Deposited,
    Error,
    Scrip,
    ScripPaid,
    ScripPayment,
)
from protocol.scrip import (
    PERIOD_MS,
    check_scrip,
    customer_master,
    customer_secret,
    make_change,
    scrip_key,
    split_key_ref,
    tag_scrip,
)
from protocol.vendor_chains import VendorTerms
from protocol.vendor_redemption import VendorRedemption

SECRETS_KEPT = 4096
"""Key pairs cached per (buyer, ref); past that the cache starts again."""
UNREACHABLE = "broker unreachable"
"""The detail of the on-line vendor's retryable answer: the broker has not answered yet."""
DEFINITIVE = "deposit"
"""The ``Error`` code with which the broker refuses a deposit for good: never sent again."""
RECONFIRM_BATCH = 256
"""Restored records asked about at once; the next batch goes ``RECONFIRM_SPACING`` later."""
RECONFIRM_SPACING = 0.1
"""Seconds between batches of restored records asked about (about 2,500 a second)."""


def deposit_corr(serial: int, generation: int) -> bytes:
    """``u64be(serial) || u32be(generation)``: names one deposit, and one scrip payment."""
    return serial.to_bytes(8, "big") + generation.to_bytes(4, "big")


def split_deposit_corr(corr: bytes) -> tuple[int, int]:
    """``(serial, generation)`` of a ``deposit_corr``; ``(0, 0)`` (no serial) for any other."""
    if len(corr) != 12:
        return 0, 0
    return int.from_bytes(corr[:8], "big"), int.from_bytes(corr[8:], "big")


@dataclass(slots=True)
class ScripRecord:
    """The spent set's entry for one serial: its highest generation accepted here.

    ``spent`` is empty for a generation taken over from the broker's answer (a store older
    than the broker's ledger): it is spent, but this vendor never saw its bytes.
    """

    serial: int
    generation: int
    buyer: str
    item: str
    price: int
    spent: bytes
    change: bytes
    expires: int
    confirmed: int = -1
    refused: str = ""
    """Why the broker refused this generation's deposit for good; empty: not refused."""
    deposit_due: float = 0.0
    backoff: float = 0.0
    reconfirming: bool = False
    """Restored from the store, and the broker has not answered for the serial since: a
    later generation may have been credited after the store was written (a backup), so
    none is accepted until the broker's answer tells (never stored)."""

    @property
    def owes_deposit(self) -> bool:
        """Something to send the broker for this serial.

        A generation it has not credited nor refused, whose bytes this vendor holds, or a
        restored record it has not answered for yet.
        """
        return self.reconfirming or (
            self.generation > self.confirmed and bool(self.spent) and not self.refused
        )


@dataclass(slots=True)
class OnlinePayment:
    """A payment that passed the rules and waits for the broker's ``deposited``.

    ``due`` is when the buyer is told to retry (``told`` false) or, once told, when the
    deposit is sent again; it stays pending until the broker answers or the serial's
    deadline passes, so a late ``deposited`` still gets the buyer its answer (3.9).
    ``claim`` is drawn once and sent with every deposit of the payment: the broker credits
    it at most once, and answers a retry after a lost ``deposited`` as no repeat.
    """

    buyer: str
    ref: bytes
    corr: bytes
    key: MacKey
    payment: ScripPayment
    scrip: Scrip
    change: bytes
    claim: bytes
    due: float
    told: bool = False
    backoff: float = 0.0


@dataclass(slots=True)
class BuyerKeys:
    """What the vendor derives for one (buyer, ref): the customer secret and the scrip key."""

    customer: MacKey
    scrip: MacKey


class VendorScrip(VendorRedemption):
    """What a vendor does with scrip; ``VendorCore`` routes ``SCRIP`` envelopes here."""

    def __init__(  # noqa: PLR0913 - identity, trust anchor, terms, randomness, limits
        self,
        account: str,
        identity: AgentKeys,
        broker: BrokerInfo,
        terms: VendorTerms,
        *,
        max_message_size: int,
        max_skew: float,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        super().__init__(
            account,
            identity,
            broker,
            terms,
            max_message_size=max_message_size,
            max_skew=max_skew,
        )
        self.spent_scrip: dict[int, ScripRecord] = {}
        self._online: dict[bytes, OnlinePayment] = {}  # by deposit corr
        self._period_keys: dict[tuple[int, int], tuple[MacKey, bytes]] = {}
        self._buyer_keys: dict[tuple[str, bytes], BuyerKeys] = {}
        self._keys_of: object = None  # the identity the cached keys derive from
        self._random = random  # an on-line payment's claim; unique per process (3.9)

    # --- keys ------------------------------------------------------------------------------

    def _keys(self, vendor_serial: int, period: int) -> tuple[MacKey, bytes]:
        """``(scrip_key, customer_master)`` of a period, derived once and kept in memory."""
        found = self._period_keys.get((vendor_serial, period))
        if found is None:
            broker = self.broker
            shared = pair_key(self.identity, self.account, broker.agree_key, broker.id)
            found = (
                MacKey(scrip_key(shared, self.account, period)),
                customer_master(shared, self.account, period),
            )
            if len(self._period_keys) >= 8:  # yesterday, today, tomorrow: a few at most
                self._period_keys.clear()
            self._period_keys[vendor_serial, period] = found
        return found

    def accepts_period(self, period: int, now_ms: int) -> bool:
        """Yesterday, today, and tomorrow during the last ``max_skew`` of today (3.2)."""
        skew_ms = int(self.replay_guard.max_skew * 1000)
        return period * PERIOD_MS <= now_ms + skew_ms and now_ms <= (period + 2) * PERIOD_MS

    def scrip_message_key(self, parsed: Parsed) -> MacKey:
        """The buyer's customer secret for ``ref``, derived from its id (SCHEMES.md 3.4).

        The period is judged at the envelope's timestamp, which the skew check then holds
        to the vendor's clock.
        """
        certified, header = self.certified, parsed.header
        if not self.terms.scrip or certified is None:
            raise AuthenticationError
        vendor_serial, period = split_key_ref(header.ref)
        if vendor_serial != certified.serial or not self.accepts_period(period, header.timestamp):
            raise AuthenticationError
        return self._keys_for(header.sender, header.ref, vendor_serial, period).customer

    def _keys_for(self, buyer: str, ref: bytes, vendor_serial: int, period: int) -> BuyerKeys:
        """The (buyer, ref)'s keys, derived on its first payment and kept (one dict lookup).

        The identity object is replaced by a rekey, so comparing it by identity costs
        nothing per payment and still drops every key derived from the old one.
        """
        if self._keys_of is not self.identity:  # a rekey: the old keys are gone
            self._period_keys.clear()
            self._buyer_keys.clear()
            self._keys_of = self.identity
        found = self._buyer_keys.get((buyer, ref))
        if found is None:
            scrip, master = self._keys(vendor_serial, period)
            found = BuyerKeys(MacKey(customer_secret(master, buyer)), scrip)
            if len(self._buyer_keys) >= SECRETS_KEPT:
                self._buyer_keys.clear()
            self._buyer_keys[buyer, ref] = found
        return found

    # --- paying ------------------------------------------------------------------------------

    def on_scrip(self, parsed: Parsed, body: Body, key: MacKey, now: float) -> list[VendorEvent]:
        """A ``SCRIP`` message from a buyer: a payment, or nothing this vendor takes."""
        try:
            if not isinstance(body, ScripPayment):
                raise UnexpectedMessageError(f"vendor does not accept {parsed.header.type!r} here")
            return self._scrip_pay(parsed, body, key, now)
        except RemoteProtocolError as error:
            self.reply_error(parsed, error.code, str(error), now, key)
            raise

    def _scrip_pay(
        self, parsed: Parsed, payment: ScripPayment, key: MacKey, now: float
    ) -> list[VendorEvent]:
        """Rules 1-9 of docs/SCHEMES.md 3.8, in order; a refusal changes nothing.

        Rule 5 (expiry) is judged after rule 7's repeat: the identical repeat of a payment
        recorded here (or pending at the broker, on-line) gets its answer even after the
        scrip expired, since the buyer resends it until answered (3.8); any other payment
        of expired scrip is refused as before.
        """
        header, terms = parsed.header, self.terms
        tagged = decode_tagged_scrip(payment.scrip)  # 1: decoded once, checked once
        scrip = decode_scrip(tagged.body)
        vendor_serial, period = split_key_ref(header.ref)
        if (scrip.vendor_serial, scrip.period) != (vendor_serial, period):  # 2
            raise ScripError("the scrip's certificate and period are not its envelope's")
        keys = self._keys_for(header.sender, header.ref, vendor_serial, period).scrip
        now_ms = int(now * 1000)
        check_scrip(  # 3, 4 (5 below, after a repeat is answered)
            tagged,
            scrip,
            keys,
            vendor=self.account,
            buyer=header.sender,
            now_ms=min(now_ms, scrip.expires),
        )
        self._check_holder_and_terms(scrip)  # 4 (the buyer's certificate), 6
        record = self.spent_scrip.get(scrip.serial)  # 7
        if (
            record is not None
            and record.generation == scrip.generation
            and (record.spent, record.item, record.price)
            == (payment.scrip, payment.item, payment.price)
        ):
            self._send_paid(header.sender, record, key, header.ref, header.corr, now)
            return []  # a repeat: the recorded answer again, nothing new to persist
        if now_ms > scrip.expires and not self._pending_repeat(header.sender, scrip, payment):
            raise ScripError("scrip expired")  # 5
        if record is not None and record.generation >= scrip.generation:
            raise ScripError("spent")
        if record is not None and record.reconfirming and not terms.scrip_online:
            raise ScripError(UNREACHABLE)  # restored: the broker has not told what it holds
        if payment.item:  # 8
            price = {offered.item: offered.price for offered in terms.items}.get(payment.item)
            if price is None:
                raise ItemError(f"no item {payment.item!r} on this vendor's offer")
            if price != payment.price:
                raise ItemError(f"{payment.item!r} costs {price}, not {payment.price}")
        made = make_change(scrip, payment.price, keys)  # 9: price <= value
        change = b"" if made is None else made[1]
        if terms.scrip_online:
            return self._deposit_first(parsed, payment, scrip, change, key, now)
        accepted = self._accept_scrip(header.sender, payment, scrip, change, -1, now)
        record = self.spent_scrip[scrip.serial]  # sent after the record is durable (the shell)
        self._send_paid(header.sender, record, key, header.ref, header.corr, now)
        return [accepted]

    def _pending_repeat(self, buyer: str, scrip: Scrip, payment: ScripPayment) -> bool:
        """The same payment as one pending at the broker (on-line): its answer is still due."""
        waiting = self._online.get(deposit_corr(scrip.serial, scrip.generation))
        return waiting is not None and (waiting.buyer, waiting.payment) == (buyer, payment)

    def _check_holder_and_terms(self, scrip: Scrip) -> None:
        """Rule 4's revocation check and rule 6: a listed buyer, or scrip this vendor refuses.

        The buyer's certificate at minting is checked against the revocation list that
        stops its chains (11.10), so a revoked buyer's scrip is refused as its paywords are.
        """
        terms = self.terms
        if scrip.buyer_serial in self.revoked:
            raise ScripError("buyer certificate revoked")
        if scrip.currency != terms.currency:
            raise ScripError(f"scrip in {scrip.currency}, this vendor takes {terms.currency}")
        missing = [p for p in terms.required_properties if p not in scrip.properties]
        if missing:
            raise ScripError(f"scrip lacks the required {', '.join(missing)}")

    def _accept_scrip(  # noqa: PLR0913 - the payment and what it made
        self,
        buyer: str,
        payment: ScripPayment,
        scrip: Scrip,
        change: bytes,
        confirmed: int,
        now: float,
    ) -> ScripAccepted:
        """Record the payment in place of the serial's record; the shell persists it first."""
        record = ScripRecord(
            scrip.serial,
            scrip.generation,
            buyer,
            payment.item,
            payment.price,
            payment.scrip,
            change,
            scrip.expires,
            confirmed,
            deposit_due=now + self.terms.redeem_interval,
        )
        self.spent_scrip[scrip.serial] = record
        return ScripAccepted(
            record.serial,
            record.generation,
            buyer,
            record.item,
            record.price,
            record.spent,
            change,
            record.expires,
            confirmed,
        )

    def _send_paid(  # noqa: PLR0913 - the answer and its stream
        self, buyer: str, record: ScripRecord, key: MacKey, ref: bytes, corr: bytes, now: float
    ) -> None:
        body = ScripPaid(record.serial, record.generation, record.price, record.change)
        self.send(buyer, body, now, auth=Auth.SCRIP, key=key, ref=ref, corr=corr)

    def _deposit_first(  # noqa: PLR0913 - the payment and its stream
        self,
        parsed: Parsed,
        payment: ScripPayment,
        scrip: Scrip,
        change: bytes,
        key: MacKey,
        now: float,
    ) -> list[VendorEvent]:
        """On-line (3.9): the broker marks the generation spent before anything is served."""
        corr = deposit_corr(scrip.serial, scrip.generation)
        header = parsed.header
        waiting = self._online.get(corr)
        if waiting is not None:
            if (waiting.buyer, waiting.payment) != (header.sender, payment):
                raise ScripError("spent")
            if waiting.told:  # told to retry, and it did: ask the broker again, now
                waiting.told, waiting.due = False, now + self.terms.scrip_online_timeout
                self._send_online_deposit(waiting, now)
            return []  # the same payment again: the broker's answer settles both
        due = now + self.terms.scrip_online_timeout
        claim = self._random(CLAIM_SIZE)
        online = OnlinePayment(
            header.sender, header.ref, header.corr, key, payment, scrip, change, claim, due
        )
        self._online[corr] = online
        self._send_online_deposit(online, now)
        return []

    def _send_online_deposit(self, online: OnlinePayment, now: float) -> None:
        payment = online.payment
        self.send(
            self.broker.id,
            Deposit(payment.scrip, payment.item, payment.price, online.change, online.claim),
            now,
            auth=Auth.PAIR,
            key=self.broker_key,
            corr=deposit_corr(online.scrip.serial, online.scrip.generation),
        )

    # --- the broker's answers ------------------------------------------------------------------

    def scrip_deposited(
        self, parsed: Parsed, deposited: Deposited, now: float
    ) -> list[VendorEvent]:
        """The broker's ``deposited``: serve an on-line payment, or confirm a record."""
        received = self.head_from_reply(parsed, deposited.ledger, b"")
        events: list[VendorEvent] = [] if received is None else [received]
        online = self._online.pop(parsed.header.corr, None)
        if online is not None:
            events.extend(self._online_answer(online, deposited, now))
            return events
        record = self.spent_scrip.get(deposited.serial)
        if record is None:
            return events
        record.reconfirming = False  # the broker's state of the serial: adopted below
        if deposited.generation < record.confirmed:
            return events
        if deposited.generation >= record.generation:
            record.refused = ""  # credited at or past it: nothing left refused
        if deposited.generation > record.generation:
            events.append(
                StateBehind(
                    "ours",
                    f"the broker credited scrip {deposited.serial} up to generation"
                    f" {deposited.generation} but this store holds only {record.generation}:"
                    " the store is older than the broker's record (restored from a backup?);"
                    " that generation will not be accepted again",
                )
            )
            record.generation, record.spent, record.change = (
                deposited.generation,
                b"",
                deposited.change,
            )
            record.item, record.price = "", 0
        record.confirmed = deposited.generation
        record.backoff = 0.0
        record.deposit_due = now + self.terms.redeem_interval
        events.append(
            ScripDepositConfirmed(
                deposited.serial, deposited.generation, deposited.credited, deposited.change
            )
        )
        return events

    def _online_answer(
        self, online: OnlinePayment, deposited: Deposited, now: float
    ) -> list[VendorEvent]:
        """Serve only on a credit of this payment's own deposit, with this vendor's change.

        The broker answers a retry of the deposit that credited it (same claim: the first
        ``deposited`` was lost) as no repeat, so that payment is still served, once. A
        ``repeat`` (credited for another claim: a replica of this vendor, or this process
        before a restart, which lost its pending payment) is answered with the change and
        not served again: one payment, one service.
        """
        scrip = online.scrip
        if deposited.generation != scrip.generation or deposited.change != online.change:
            self._refuse_online(online, "spent", now)
            return []
        payment = online.payment
        event: VendorEvent
        if deposited.repeat:
            event = ScripRepeatAnswered(scrip.serial, scrip.generation, online.buyer, payment.item)
        else:
            event = self._accept_scrip(
                online.buyer, payment, scrip, online.change, scrip.generation, now
            )
        paid = ScripPaid(scrip.serial, scrip.generation, payment.price, online.change)
        self._answer_online(online, paid, now)
        return [event]

    def _refuse_online(self, online: OnlinePayment, detail: str, now: float) -> None:
        self._answer_online(online, Error("scrip", detail), now)

    def _answer_online(self, online: OnlinePayment, body: Body, now: float) -> None:
        """Answer an on-line payment on its own stream: its buyer's secret, ref and corr."""
        self.send(
            online.buyer,
            body,
            now,
            auth=Auth.SCRIP,
            key=online.key,
            ref=online.ref,
            corr=online.corr,
        )

    def scrip_refused(self, corr: bytes, error: Error, now: float) -> list[VendorEvent]:
        """The broker refused a deposit: relay it (on-line), or stop or try again much later.

        An ``Error`` ``deposit`` is definitive (the broker refuses the same bytes the same
        way each time): the record is marked refused, never deposited again, and kept for
        the operator. Any other code (a broker busy or restarting) is retried much later.
        """
        online = self._online.pop(corr, None)
        if online is not None:
            detail = "spent" if error.code == DEFINITIVE else f"the broker refused: {error.detail}"
            self._refuse_online(online, detail[:256], now)
            return []
        serial, generation = split_deposit_corr(corr)
        record = self.spent_scrip.get(serial)
        if record is None or record.generation != generation:
            return []
        if error.code != DEFINITIVE:
            record.deposit_due = now + self.terms.redeem_retry_max
            return []
        # Asked again after a restore, and refused for good (past the deadline): the broker
        # tells nothing more, and a record it had confirmed is not refused by that.
        record.reconfirming = False
        if not record.owes_deposit:
            return []  # confirmed meanwhile, or refused already
        record.refused = error.detail or "refused"
        at = int(now * 1000)
        return [ScripDepositRefused(record.serial, record.generation, record.refused, at)]

    # --- restore, timers -----------------------------------------------------------------------

    def restore_scrip(self, record: ScripRecord, now: float) -> ScripRecord:
        """Reinstate a spent-set record from the store and deposit it again, confirmed or not.

        An unconfirmed deposit may have been sent before the restart and never answered;
        a confirmed one may be older than the broker's ledger (a store restored from a
        backup, while later generations of the serial were credited). The broker takes the
        same deposit again (idempotent: ``deposited`` with ``repeat``, no ledger event), and
        its answer carries the serial's credited generation, which ``scrip_deposited``
        adopts. Until it has answered for the serial, a further generation is answered
        ``broker unreachable`` (the buyer resends it), as a restored chain is reconfirmed
        (3.9). The first ``RECONFIRM_BATCH`` go at the first timer, the rest in batches.
        """
        record.reconfirming = self._may_have_moved(record)
        restored = len(self.spent_scrip)
        record.deposit_due = now + (restored // RECONFIRM_BATCH) * RECONFIRM_SPACING
        record.backoff = 0.0
        self.spent_scrip[record.serial] = record
        return record

    @staticmethod
    def _may_have_moved(record: ScripRecord) -> bool:
        """Whether the broker may hold a later generation than this record, and can be asked.

        Not when the record left no change (its serial is spent out), nor when the broker
        refused it for good (asked again, it would refuse again and tell nothing). A record
        adopted from the broker (``spent`` empty) is asked about with its change (3.9).
        """
        if record.refused or not record.change:
            return False
        return bool(record.spent) or record.generation >= 1

    def _deadline(self, record: ScripRecord) -> int:
        return self._deadline_of(record.expires)

    def scrip_timer(self) -> float | None:
        """The next deposit, on-line timeout, or deadline at which a record goes."""
        due = [r.deposit_due for r in self.spent_scrip.values() if r.owes_deposit]
        due.extend(self._deadline(r) / 1000 for r in self.spent_scrip.values())
        due.extend(o.due for o in self._online.values())
        return min(due) if due else None

    def scrip_due(self, now: float) -> list[VendorEvent]:
        """Forget records past their deadline, deposit what is due, time out on-line payments."""
        now_ms = int(now * 1000)
        events: list[VendorEvent] = []
        for record in list(self.spent_scrip.values()):
            if now_ms > self._deadline(record):
                del self.spent_scrip[record.serial]
                events.append(ScripForgotten(record.serial))
            elif record.owes_deposit and record.deposit_due <= now:
                self._send_deposit(record, now)
        for corr, online in list(self._online.items()):
            if now_ms > self._deadline_of(online.scrip.expires):
                del self._online[corr]  # the broker takes no deposit now: nothing was charged
            elif online.due <= now:
                self._online_overdue(online, now)
        return events

    def _deadline_of(self, expires: int) -> int:
        return expires + int(self.terms.scrip_deposit_grace * 1000)

    def _online_overdue(self, online: OnlinePayment, now: float) -> None:
        """No answer yet: tell the buyer to retry (once), and keep asking the broker.

        The payment stays pending, not refused: the broker may have credited it already,
        and its late ``deposited``, or the buyer's retry of the same bytes, gets the buyer
        the real answer with change (3.9).
        """
        terms = self.terms
        if not online.told:
            online.told = True
            self._refuse_online(online, UNREACHABLE, now)
        online.backoff = min(max(online.backoff * 2, terms.redeem_retry), terms.redeem_retry_max)
        online.due = now + online.backoff
        self._send_online_deposit(online, now)

    def deposit_all(self, now: float) -> int:
        """Deposit what the broker has not confirmed: records, and on-line payments pending."""
        owing = [r for r in self.spent_scrip.values() if r.owes_deposit]
        for record in owing:
            self._send_deposit(record, now)
        for online in self._online.values():
            self._send_online_deposit(online, now)
        return len(owing) + len(self._online)

    def _send_deposit(self, record: ScripRecord, now: float) -> None:
        """Deposit the serial's latest record; unanswered, it is sent again with backoff."""
        terms = self.terms
        record.backoff = min(max(record.backoff * 2, terms.redeem_retry), terms.redeem_retry_max)
        record.deposit_due = now + record.backoff
        if record.spent:
            body = Deposit(record.spent, record.item, record.price, record.change)
        else:
            body = self._state_query(record)
        self.send(
            self.broker.id,
            body,
            now,
            auth=Auth.PAIR,
            key=self.broker_key,
            corr=deposit_corr(record.serial, record.generation),
        )

    def _state_query(self, record: ScripRecord) -> Deposit:
        """A deposit that only asks the serial's state, for a record adopted from the broker.

        Such a record holds no bytes it was paid with, only the broker's generation G >= 1
        and its change. The serial's scrip at generation G - 1, made from that change under
        this vendor's scrip key, is older than what the broker credited: the broker answers
        it with the serial's state (3.8 step 3), crediting and recording nothing. Its price
        leaves value over and it names no change, so a broker that had lost the serial's
        deposits would refuse it (the change is wrong), never credit it.
        """
        change = decode_scrip(decode_tagged_scrip(record.change).body)
        older = msgspec.structs.replace(
            change, generation=record.generation - 1, value=change.value + 2
        )
        key = self._keys(older.vendor_serial, older.period)[0]
        return Deposit(tag_scrip(older, key), "", 1, b"")

    @property
    def scrip_awaiting_deposit(self) -> int:
        """Serials whose latest generation taken here the broker has not confirmed yet."""
        return sum(1 for r in self.spent_scrip.values() if r.owes_deposit)

    @property
    def scrip_online_pending(self) -> int:
        """On-line payments deposited and not answered by the broker yet."""
        return len(self._online)

    @property
    def scrip_deposits_refused(self) -> int:
        """Records whose deposit the broker refused for good (kept for the operator)."""
        return sum(1 for r in self.spent_scrip.values() if r.refused)
