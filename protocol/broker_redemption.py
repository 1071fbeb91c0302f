"""The broker's money side: registering commitments (on-line), redeeming paywords.

Every redemption is checked against the money rules (``protocol.money_rules``) and the
buyer's credit; refusals are recorded in the ledger as evidence and answered.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.broker_books import (
    Account,
    BrokerBooks,
    ChainRecord,
    ms,
)
from protocol.broker_events import (
    CertificateRevoked,
    CommitmentRegistered,
    CreditLimitExceeded,
    PaywordsRedeemed,
    RedemptionRejected,
    RegistrationRefused,
)
from protocol.credentials import (
    VerifiedCommitment,
    verify_commitment,
)
from protocol.crypto import (
    MacKey,
)
from protocol.envelope import (
    Auth,
    Parsed,
)
from protocol.errors import (
    CommitmentError,
    RedemptionError,
    RemoteProtocolError,
)
from protocol.messages import (
    Body,
    Redeem,
    Redeemed,
    Register,
    Registered,
    SignedHead,
)
from protocol.money_rules import (
    Payword,
    amount_for,
    check_payword,
    fits_total,
    units_between,
)


class BrokerRedemption(BrokerBooks):
    """Registration and redemption on top of the books; ``BrokerCore`` adds the rest."""

    # --- commitments and redemption ------------------------------------------------------------

    def _verified(self, vendor: str, signed: bytes, now: float, grace: float) -> VerifiedCommitment:
        verified = verify_commitment(signed, self.trusted, self.account, now - grace, vendor)
        if verified.commitment.length > self.policy.max_chain_length:
            raise CommitmentError(f"chain longer than {self.policy.max_chain_length}")
        buyer = self.accounts.get(verified.certificate.subject)
        if buyer is None or buyer.role != "buyer":
            raise CommitmentError("buyer has no account here")
        if self.issued.get(verified.certificate.serial) != verified.commitment.buyer_certificate:
            # Signed by a key of this broker, yet not a certificate it issued: a retired
            # key in other hands. Nothing under it is registered or paid.
            raise CommitmentError("buyer certificate was not issued by this broker")
        seller = self.accounts[vendor]
        if seller.role != "vendor":
            raise CommitmentError(f"{vendor!r} is not a vendor account")
        if verified.commitment.currency != seller.currency:
            raise CommitmentError("commitment currency differs from the vendor's account")
        return verified

    def _ensure_registered(
        self, verified: VerifiedCommitment, reserved: int, now: float
    ) -> ChainRecord:
        record = self.chains.get(verified.id)
        if record is None:
            commitment = verified.commitment
            self._record(
                CommitmentRegistered(
                    at=ms(now),
                    commitment_id=verified.id,
                    buyer=verified.certificate.subject,
                    vendor=commitment.vendor,
                    commitment=verified.signed,
                    length=commitment.length,
                    unit_value=commitment.unit_value,
                    reserved=reserved,
                )
            )
            record = self.chains[verified.id]
        return record

    def _redeem(self, parsed: Parsed, redeem: Redeem, key: MacKey, now: float) -> None:
        vendor = parsed.header.sender
        try:
            verified = self._verified(vendor, redeem.commitment, now, self.policy.redemption_grace)
            record = self.chains.get(verified.id)
            if record is not None and redeem.index <= record.index:
                self._send_redeemed(parsed, verified.id, record, key, now)
                return
            self._check_redeemable(verified, record, redeem)
            self._check_bounded(verified, record, redeem)
        except RemoteProtocolError as error:
            self._record(
                RedemptionRejected(
                    at=ms(now),
                    vendor=vendor,
                    reason=str(error),
                    commitment=redeem.commitment,
                    index=redeem.index,
                    payword=redeem.payword,
                )
            )
            raise RedemptionError(str(error)) from error
        record = self._ensure_registered(verified, 0, now)
        units = units_between(record.index, redeem.index)
        amount = amount_for(units, record.unit_value)
        self._record(
            PaywordsRedeemed(
                at=ms(now),
                commitment_id=verified.id,
                buyer=record.buyer,
                vendor=vendor,
                commitment=verified.signed,
                from_index=record.index,
                index=redeem.index,
                payword=redeem.payword,
                units=units,
                amount=amount,
            )
        )
        self._check_credit(record.buyer, now)
        self._send_redeemed(parsed, verified.id, record, key, now)

    @staticmethod
    def _check_redeemable(
        verified: VerifiedCommitment, record: ChainRecord | None, redeem: Redeem
    ) -> None:
        commitment = verified.commitment
        index, word = (record.index, record.word) if record else (0, commitment.root)
        verdict = check_payword(redeem.payword, redeem.index, commitment.length, word, index)
        if verdict is Payword.BEYOND_LENGTH:
            raise RedemptionError(f"index {redeem.index} beyond chain length {commitment.length}")
        if verdict is Payword.OFF_CHAIN:
            raise RedemptionError(f"payword {redeem.index} does not hash to the chain")

    def _check_bounded(
        self, verified: VerifiedCommitment, record: ChainRecord | None, redeem: Redeem
    ) -> None:
        """Refuse a credit that would carry a total past ``MAX_TOTAL``.

        The unit value is the buyer's to choose (up to ``Count``), so units times value can
        exceed what a ``Redeemed``, ``Balance`` or ``Invoice`` can carry.
        """
        commitment = verified.commitment
        units = units_between(record.index if record else 0, redeem.index)
        amount = amount_for(units, commitment.unit_value)
        totals = self.totals
        buyer, vendor = verified.certificate.subject, commitment.vendor
        largest = max(totals.debited.get(buyer, 0), totals.credited.get(vendor, 0))
        if not fits_total(largest, amount):
            raise RedemptionError(f"crediting {amount} would overflow the totals")

    def _check_credit(self, buyer: str, now: float) -> None:
        account = self.accounts[buyer]
        limit = account.credit_limit
        exposure = self.totals.debited[buyer] + self.totals.reserved[buyer]
        # MiniPay: a day's grant holds credit for off-line chains, which count once debited
        exposure -= self.allowances.held_by.get(buyer, 0)
        if exposure > limit:
            if account.serial in self.revoked:
                return  # already cut off; vendors stop at the revocation list
            self._record(
                CreditLimitExceeded(at=ms(now), buyer=buyer, exposure=exposure, limit=limit)
            )
            if self.policy.revoke_over_limit:
                self._revoke_over_limit(account, now)

    def _revoke_over_limit(self, account: Account, now: float) -> None:
        self._record(
            CertificateRevoked(
                at=ms(now),
                account=account.name,
                serial=account.serial,
                reason="credit limit exceeded",
            )
        )
        self.publish_revocations(now)

    def _send_redeemed(
        self, parsed: Parsed, cid: bytes, record: ChainRecord, key: MacKey, now: float
    ) -> None:
        index, amount = record.index, record.amount
        self._reply_with_head(
            parsed,
            lambda head: Redeemed(cid, index, amount, head),
            key,
            now,
            corr=parsed.header.corr,
        )

    def _reply_with_head(
        self,
        parsed: Parsed,
        body: Callable[[SignedHead | None], Body],
        key: MacKey,
        now: float,
        *,
        corr: bytes,
    ) -> None:
        """A reply that moves money carries the signed head of the ledger that holds it."""
        recipient = parsed.header.sender
        if self.attest_replies:
            self.hold(recipient, body, now, auth=Auth.PAIR, key=key, corr=corr)
        else:
            self.send(recipient, body(None), now, auth=Auth.PAIR, key=key, corr=corr)

    def _register(self, parsed: Parsed, register: Register, key: MacKey, now: float) -> None:
        vendor = parsed.header.sender
        verified = self._verified(vendor, register.commitment, now, 0.0)
        commitment = verified.commitment
        buyer = verified.certificate.subject
        approved, reason = True, ""
        if verified.id not in self.chains:
            value = amount_for(commitment.length, commitment.unit_value)
            debited, reserved = self.totals.debited[buyer], self.totals.reserved[buyer]
            limit = self.accounts[buyer].credit_limit
            if verified.certificate.serial in self.revoked:
                approved, reason = False, "certificate revoked"
            elif debited + reserved + value > limit:
                approved = False
                reason = (
                    f"credit limit {limit}: {debited} already debited and {reserved} reserved,"
                    f" a chain worth {value} more would pass it"
                )
            if approved:
                self._ensure_registered(verified, value, now)
            else:
                self._record(
                    RegistrationRefused(
                        at=ms(now),
                        commitment_id=verified.id,
                        buyer=buyer,
                        vendor=vendor,
                        reason=reason,
                    )
                )
        cid = verified.id
        self._reply_with_head(
            parsed,
            lambda head: Registered(cid, approved, reason, head),
            key,
            now,
            corr=parsed.header.corr,
        )
