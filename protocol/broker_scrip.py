"""The broker's side of Millicent scrip: minting, deposits and the return at the deadline.

The broker reserves a scrip's value against the buyer when it mints, moves money only
when the vendor deposits what was spent, and releases the rest at the serial's deadline
(docs/SCHEMES.md 3.6, 3.8). A deposit is credited only down from the outstanding value
the broker recorded and only against change it recomputes itself, so a vendor cannot
inflate what it is paid (3.12).
"""

from __future__ import annotations

import heapq
import hmac
from collections.abc import Callable

import msgspec

from protocol.broker_books import Account, certificate_of, ms
from protocol.broker_events import DepositRejected, ScripDeposited, ScripMinted, ScripReturned
from protocol.broker_rekey import BrokerRekey
from protocol.codec import decode_scrip, decode_tagged_scrip, encode
from protocol.crypto import MacKey, pair_key
from protocol.envelope import Parsed
from protocol.errors import (
    AuthenticationError,
    DepositError,
    MintError,
    RemoteProtocolError,
)
from protocol.messages import SCRIP_NONCE_SIZE, Deposit, Deposited, Minted, MintRequest, Scrip
from protocol.money_rules import fits_total
from protocol.scrip import (
    PERIOD_MS,
    TAG_SCRIP,
    customer_master,
    customer_secret,
    make_change,
    period_of,
    scrip_key,
    tag_scrip,
    wrap_customer_secret,
)
from protocol.scrip_state import MAX_DEPOSIT_REJECTIONS, ScripRecord


class BrokerScrip(BrokerRekey):
    """Scrip on top of the books, redemption and rekeys; ``BrokerCore`` adds the rest."""

    _random: Callable[[int], bytes]
    """The broker's random source (``BrokerCore`` sets it): a mint draws its scrip's nonce."""

    # --- keys ----------------------------------------------------------------------------------

    def _pair_secret(self, account: str, serial: int) -> bytes:
        """The pair key with ``account`` under its certificate ``serial`` (any it ever held).

        Scrip keys derive from the vendor's pair key of the certificate the scrip names,
        so a deposit made after a vendor rekey is still checked under the old one (3.2).
        """
        cached = self.scrip_pair_secrets.get(serial)
        if cached is not None and cached[0] == account:
            return cached[1]
        signed = self.issued.get(serial)
        if signed is None:
            raise DepositError(f"no certificate {serial}")
        certificate = certificate_of(signed)
        if certificate.subject != account:
            raise DepositError(f"certificate {serial} is not {account!r}'s")
        secret = pair_key(self.identity, self.account, certificate.agree_key, account)
        # One X25519 per certificate, not three per mint: a serial's key never changes, and
        # there are no more entries than certificates issued.
        self.scrip_pair_secrets[serial] = (account, secret)
        return secret

    # --- minting -------------------------------------------------------------------------------

    def _mint(self, parsed: Parsed, request: MintRequest, key: MacKey, now: float) -> None:
        buyer_name = parsed.header.sender
        serial = self.scrip.requests.get((buyer_name, request.request))
        if serial is None:
            buyer, vendor = self._mint_parties(buyer_name, request, now)
            serial = self._record_mint(buyer, vendor, request, now).scrip.serial
        self._send_minted(parsed, self.scrip.records[serial], key, now)

    def _mint_parties(
        self, buyer_name: str, request: MintRequest, now: float
    ) -> tuple[Account, Account]:
        """Steps 2-3 of minting: both certificates good now, one currency, within limits."""
        buyer = self.accounts[buyer_name]
        if buyer.role != "buyer":
            raise MintError("only buyers buy scrip")
        self._check_certified(buyer, "buyer", now)
        vendor = self.accounts.get(request.vendor)
        if vendor is None or vendor.role != "vendor":
            raise MintError(f"{request.vendor!r} is not a vendor account")
        self._check_certified(vendor, "vendor", now)
        if vendor.currency != buyer.currency:
            raise MintError(f"{vendor.name} takes {vendor.currency}, not {buyer.currency}")
        largest = self.policy.max_scrip_value
        if request.value > largest:
            raise MintError(f"scrip is worth at most {largest}")
        debited, reserved = self.totals.debited[buyer.name], self.totals.reserved[buyer.name]
        if debited + reserved + request.value > buyer.credit_limit:
            raise MintError(
                f"credit limit {buyer.credit_limit}: {debited} already debited and {reserved}"
                f" reserved, scrip worth {request.value} more would pass it"
            )
        return buyer, vendor

    def _check_certified(self, account: Account, role: str, now: float) -> None:
        if not account.serial:
            raise MintError(f"{role} {account.name} has no certificate")
        if account.serial in self.revoked:
            raise MintError(f"{role} {account.name}'s certificate is revoked")
        certificate = certificate_of(account.certificate)
        if not certificate.not_before <= ms(now) <= certificate.not_after:
            raise MintError(f"{role} {account.name}'s certificate is not valid now")

    def _record_mint(
        self, buyer: Account, vendor: Account, request: MintRequest, now: float
    ) -> ScripRecord:
        """Step 4-5: the next serial, tagged under the vendor's key of this period."""
        now_ms = ms(now)
        lifetime_ms = min(int(self.policy.scrip_lifetime * 1000), PERIOD_MS)
        expires = min(
            now_ms + lifetime_ms,
            certificate_of(buyer.certificate).not_after,
            certificate_of(vendor.certificate).not_after,
        )
        if expires <= now_ms:  # a certificate that ends this very millisecond
            raise MintError("a certificate ends now: the scrip would expire as it is minted")
        scrip = Scrip(
            vendor=vendor.name,
            vendor_serial=vendor.serial,
            period=period_of(now_ms),
            serial=self.scrip.last_serial + 1,
            generation=0,
            buyer=buyer.name,
            buyer_serial=buyer.serial,
            value=request.value,
            currency=vendor.currency,
            expires=expires,
            properties=list(self.policy.scrip_properties),
            nonce=self._random(SCRIP_NONCE_SIZE),
        )
        vendor_key = self._pair_secret(vendor.name, vendor.serial)
        tagged = tag_scrip(scrip, scrip_key(vendor_key, vendor.name, scrip.period))
        self._record(
            ScripMinted(
                at=now_ms,
                buyer=buyer.name,
                buyer_serial=scrip.buyer_serial,
                vendor=vendor.name,
                vendor_serial=scrip.vendor_serial,
                serial=scrip.serial,
                period=scrip.period,
                value=scrip.value,
                currency=scrip.currency,
                expires=scrip.expires,
                properties=scrip.properties,
                request=request.request,
                scrip=tagged,
                deadline=scrip.expires + int(self.policy.scrip_deposit_grace * 1000),
                max_value=self.policy.max_scrip_value,
                nonce=scrip.nonce,
            )
        )
        return self.scrip.records[scrip.serial]

    def _send_minted(self, parsed: Parsed, record: ScripRecord, key: MacKey, now: float) -> None:
        """The scrip and the buyer's customer secret, wrapped under the buyer's pair key.

        Both derive from pair keys, so a repeated request gets the same bytes without the
        broker storing any secret (3.3).
        """
        scrip = record.scrip
        vendor_key = self._pair_secret(scrip.vendor, scrip.vendor_serial)
        master = customer_master(vendor_key, scrip.vendor, scrip.period)
        secret = customer_secret(master, scrip.buyer)
        buyer = self.accounts[scrip.buyer]
        buyer_key = self._pair_secret(buyer.name, buyer.serial)
        wrapped = wrap_customer_secret(
            buyer_key, scrip.vendor, scrip.vendor_serial, scrip.period, secret
        )
        request, minted = record.request, record.minted
        self._reply_with_head(
            parsed,
            lambda head: Minted(request, minted, wrapped, head),
            key,
            now,
            corr=parsed.header.corr,
        )

    # --- deposits ------------------------------------------------------------------------------

    def _deposit(self, parsed: Parsed, deposit: Deposit, key: MacKey, now: float) -> None:
        vendor = parsed.header.sender
        # Step 1 refusals prove nothing about money (not a vendor, not its serial, not the
        # scrip minted): answered and logged, never written to the ledger (3.8).
        spent, record, scrip_key_ = self._deposited_scrip(vendor, deposit)
        try:
            if record.closed or ms(now) > record.deadline_ms:
                raise DepositError(f"serial {spent.serial} is past its deadline")
            if record.generation is not None and spent.generation <= record.generation:
                self._repeat_deposit(parsed, deposit, spent, record, key, now)
                return
            credit = self._deposit_credit(deposit, spent, record, scrip_key_)
        except RemoteProtocolError as error:
            if record.rejections < MAX_DEPOSIT_REJECTIONS:
                self._record(
                    DepositRejected(
                        at=ms(now),
                        vendor=vendor,
                        reason=str(error),
                        deposit=encode(deposit),
                        serial=spent.serial,
                    )
                )
            raise DepositError(str(error)) from error
        self._record(
            ScripDeposited(
                at=ms(now),
                vendor=vendor,
                buyer=record.buyer,
                serial=spent.serial,
                generation=spent.generation,
                spent=deposit.spent,
                item=deposit.item,
                price=deposit.price,
                change=deposit.change,
                credit=credit,
                outstanding=spent.value - deposit.price,
                claim=deposit.claim,
            )
        )
        self._send_deposited(parsed, spent.serial, record, key, now)

    def _deposited_scrip(self, vendor: str, deposit: Deposit) -> tuple[Scrip, ScripRecord, bytes]:
        """Step 1: a vendor's deposit of scrip this broker minted for it, as minted.

        A serial never minted, minted for another vendor, or presented without the nonce it
        was minted with gets one and the same refusal, so probing serials teaches a vendor
        nothing: the scrip it can deposit is the scrip it was shown.
        """
        account = self.accounts.get(vendor)
        if account is None or account.role != "vendor":
            raise DepositError("only vendors deposit scrip")
        try:
            tagged = decode_tagged_scrip(deposit.spent)
            spent = decode_scrip(tagged.body)
        except RemoteProtocolError as error:
            raise DepositError(f"spent scrip does not decode: {error}") from error
        record = self.scrip.records.get(spent.serial)
        if (
            record is None
            or spent.vendor != vendor
            or record.vendor != vendor
            or not hmac.compare_digest(spent.nonce, record.scrip.nonce)
        ):
            raise DepositError(f"serial {spent.serial} was not minted for {vendor}")
        key = scrip_key(self._pair_secret(vendor, spent.vendor_serial), vendor, spent.period)
        try:
            MacKey(key).verify(tagged.tag, TAG_SCRIP, tagged.body)
        except AuthenticationError as error:
            raise DepositError("scrip tag does not verify") from error
        minted = record.scrip
        if msgspec.structs.replace(spent, generation=0, value=minted.value) != minted:
            raise DepositError(f"scrip differs from serial {spent.serial} as minted")
        return spent, record, key

    def _repeat_deposit(  # noqa: PLR0913 - the request, what it presented, and the record
        self,
        parsed: Parsed,
        deposit: Deposit,
        spent: Scrip,
        record: ScripRecord,
        key: MacKey,
        now: float,
    ) -> None:
        """Step 3: the same payment again, or an older one, gets the state; another, no.

        It is a ``repeat`` unless it carries the claim of the deposit that credited it:
        then it is the crediting vendor process's own retry (its ``deposited`` was lost),
        which still has to serve the payment (3.9).
        """
        current = spent.generation == record.generation
        same = (deposit.item, deposit.price, deposit.change) == (
            record.item,
            record.price,
            record.change,
        )
        if current and not same:
            raise DepositError(f"generation {spent.generation} already deposited")
        retry = current and bool(deposit.claim) and deposit.claim == record.claim
        self._send_deposited(parsed, spent.serial, record, key, now, repeat=not retry)

    def _deposit_credit(
        self, deposit: Deposit, spent: Scrip, record: ScripRecord, key: bytes
    ) -> int:
        """Steps 4-6: what the deposit credits, from the outstanding value down."""
        price = deposit.price
        if not price <= spent.value <= record.outstanding:
            raise DepositError(
                f"price {price}, scrip worth {spent.value}, {record.outstanding} outstanding"
            )
        try:
            change = make_change(spent, price, key)
        except RemoteProtocolError as error:
            raise DepositError(f"no change can be made: {error}") from error
        if deposit.change != (b"" if change is None else change[1]):
            raise DepositError("change is not the change this payment makes")
        credit = record.outstanding - (spent.value - price)
        totals = self.totals
        largest = max(totals.debited[record.buyer], totals.credited[record.vendor])
        if not fits_total(largest, credit):
            raise DepositError(f"crediting {credit} would overflow the totals")
        return credit

    def _send_deposited(  # noqa: PLR0913 - the request, the record, and whether it repeats
        self,
        parsed: Parsed,
        serial: int,
        record: ScripRecord,
        key: MacKey,
        now: float,
        *,
        repeat: bool = False,
    ) -> None:
        """The serial's state; ``repeat``: credited before, not by this deposit's claim (3.9)."""
        generation, credited = record.generation or 0, record.credited
        outstanding, change = record.outstanding, record.change
        self._reply_with_head(
            parsed,
            lambda head: Deposited(serial, generation, credited, outstanding, change, head, repeat),
            key,
            now,
            corr=parsed.header.corr,
        )

    # --- the return at the deadline ------------------------------------------------------------

    def _scrip_due(self) -> float | None:
        """When the next serial with value outstanding reaches its deadline."""
        return self.scrip.next_due()

    def _return_scrip(self, now: float) -> None:
        """Release what serials past their deadline still hold: the return to the buyer."""
        while (due := self.scrip.next_due()) is not None and due <= now:
            _, serial = heapq.heappop(self.scrip.deadlines)
            record = self.scrip.records[serial]
            self._record(
                ScripReturned(
                    at=ms(now),
                    buyer=record.buyer,
                    vendor=record.vendor,
                    serial=serial,
                    amount=record.outstanding,
                )
            )
