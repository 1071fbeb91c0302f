"""The auditor's per-event rules: evidence, arithmetic, billing, invariants.

Decoding and arithmetic run in the scanning thread; Ed25519 verifications go to a thread
pool (they release the GIL) and are collected in order, so a bad signature is still
reported at the sequence number of the event that carried it.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from broker_ledger.allowance_checks import AllowanceChecks
from broker_ledger.audit_result import AuditReport
from broker_ledger.billing import bill
from broker_ledger.format import TAG_CHECKPOINT, checkpoint_message
from broker_ledger.projections import ReadModels, fold
from broker_ledger.scrip_checks import ScripAudit
from protocol.broker_events import (
    AccountOpened,
    AnyBrokerEvent,
    CertificateIssued,
    CertificateRekeyed,
    CommitmentRegistered,
    InvoiceIssued,
    PaywordsRedeemed,
    PeriodClosed,
    ScripDeposited,
    ScripMinted,
    ScripReturned,
    StatementIssued,
)
from protocol.codec import decode_as, decode_certificate, decode_commitment, decode_signed
from protocol.credentials import commitment_id
from protocol.crypto import TAG_CERTIFICATE, TAG_COMMITMENT
from protocol.errors import CertificateError, MalformedMessageError, RekeyError
from protocol.messages import Certificate, RekeyRequest, Role
from protocol.money_rules import (
    Payword,
    amount_for,
    check_payword,
    signature_ok,
    spans,
    within_commitment,
)
from protocol.rekey import check_rekey_request
from protocol.trusted_keys import TrustedKeys

MAX_PENDING: Final = 4_096


def checkpoint_signed(broker_id: str, key: bytes, seq: int, head: bytes, signature: bytes) -> bool:
    """Whether the broker signed (sequence, head)."""
    return signature_ok(key, TAG_CHECKPOINT, checkpoint_message(broker_id, seq, head), signature)


@dataclass(slots=True)
class _Chain:
    signed: bytes
    buyer: str
    vendor: str
    length: int
    unit_value: int
    index: int
    word: bytes
    amount: int = 0


@dataclass(slots=True)
class _Redemption:
    seq: int
    event: PaywordsRedeemed | ScripDeposited


class Verifier:
    """Applies every rule to each event in sequence order."""

    def __init__(
        self,
        broker_id: str,
        broker_keys: TrustedKeys,
        pool: ThreadPoolExecutor,
        report: AuditReport,
        snapshot_at: int | None = None,
    ) -> None:
        self.broker_id = broker_id
        self.broker_keys = broker_keys
        self._held: dict[str, Certificate] = {}  # each account's current certificate
        self.report = report
        self._pool = pool
        self._pending: deque[tuple[int, str, str, Future[bool]]] = deque()
        self._certificates: dict[bytes, Certificate] = {}
        self._accounts: dict[str, AccountOpened] = {}
        self._serials: set[int] = set()
        self._issued: set[bytes] = set()  # the exact bytes of every certificate it issued
        self._chains: dict[bytes, _Chain] = {}
        self._redemptions: list[_Redemption] = []
        self._period_events: dict[str, list[AnyBrokerEvent]] = {}
        self._last_through = 0
        # --- scrip (docs/SCHEMES.md 3.10) ---
        self.scrip = ScripAudit(report)
        self.models = ReadModels()
        self.snapshot_at = snapshot_at
        self._snapshot: ReadModels | None = None
        self.allowances = AllowanceChecks(broker_id, broker_keys, report)  # MiniPay

    # --- the dispatcher ------------------------------------------------------------------------

    def check(self, seq: int, event: AnyBrokerEvent) -> None:
        """Apply the rules for one event, then fold it into the recomputed read models."""
        if self._snapshot is None and self.snapshot_at is not None and seq > self.snapshot_at:
            # History goes on past the projection's position: keep the state as of there.
            self._snapshot = copy.deepcopy(self.models)
        self.allowances.check(seq, event, self.models)  # before the event is folded
        match event:
            case AccountOpened():
                self._account(seq, event)
            case CertificateIssued():
                self._certificate_issued(seq, event)
            case CertificateRekeyed():
                self._certificate_rekeyed(seq, event)
            case CommitmentRegistered():
                self._commitment(seq, event)
            case PaywordsRedeemed():
                self._redeemed(seq, event)
            case InvoiceIssued() | StatementIssued():
                self._period_events.setdefault(event.period, []).append(event)
            case PeriodClosed():
                self._period_closed(seq, event)
            # --- scrip (docs/SCHEMES.md 3.10) ---
            case ScripMinted() | ScripDeposited() | ScripReturned():
                self._scrip(seq, event)
            case _:
                pass
        self._fold(seq, event)

    def _fold(self, seq: int, event: AnyBrokerEvent) -> None:
        try:
            fold(self.models, seq, event)
        except KeyError as exc:
            scrip = isinstance(event, ScripDeposited | ScripReturned)
            check = "scrip-serials" if scrip else "redemption-arithmetic"
            self.report.fail(seq, check, f"event refers to unknown {exc}")

    def _scrip(self, seq: int, event: ScripMinted | ScripDeposited | ScripReturned) -> None:
        """The scrip rules; a deposit is billed like a redemption."""
        self.scrip.check(seq, event, self.models, self._accounts)
        if isinstance(event, ScripDeposited):
            self._redemptions.append(_Redemption(seq, event))

    def models_at(self, position: int) -> ReadModels | None:
        """The recomputed read models as of ``position`` (None if never reached)."""
        if position == self.models.position:
            return self.models
        if position == 0:
            return ReadModels()
        if self._snapshot is not None and self._snapshot.position == position:
            return self._snapshot
        return None

    def finish(self) -> None:
        """Collect every outstanding signature verdict and the ledger-wide invariants."""
        while self._pending:
            self._collect_one()
        self.scrip.finish()
        report = self.report
        report.accounts = len(self._accounts)
        report.commitments = len(self._chains)
        debits = sum(b.debited for b in self.models.balances.values())
        credits_ = sum(b.credited for b in self.models.balances.values())
        report.debited, report.credited = debits, credits_
        report.settled = sum(b.settled for b in self.models.balances.values())
        if debits != credits_:
            report.fail(None, "debits-equal-credits", f"debited {debits} != credited {credits_}")

    # --- signatures on the pool ----------------------------------------------------------------

    def _verify_later(self, seq: int, check: str, what: str, job: Callable[[], bool]) -> None:
        self._pending.append((seq, check, what, self._pool.submit(job)))
        if len(self._pending) > MAX_PENDING:
            self._collect_one()

    def _collect_one(self) -> None:
        seq, check, what, future = self._pending.popleft()
        if future.result():
            self.report.signatures_verified += 1
        else:
            self.report.fail(seq, check, f"{what} signature does not verify")

    def _certificate(self, seq: int, signed_bytes: bytes) -> Certificate | None:
        known = self._certificates.get(signed_bytes)
        if known is not None:
            return known
        try:
            signed = decode_signed(signed_bytes)
            certificate = decode_certificate(signed.body)
            key = self.broker_keys.for_certificate(certificate)
        except (MalformedMessageError, CertificateError) as exc:
            self.report.fail(seq, "certificate-signatures", f"certificate {exc}")
            return None
        body, signature = signed.body, signed.signature
        self._verify_later(
            seq,
            "certificate-signatures",
            f"certificate {certificate.serial}",
            lambda: signature_ok(key, TAG_CERTIFICATE, body, signature),
        )
        self._certificates[signed_bytes] = certificate
        self.report.certificates += 1
        return certificate

    # --- per event type ------------------------------------------------------------------------

    def _role_of(self, account: str) -> Role | None:
        opened = self._accounts.get(account)
        return None if opened is None else opened.role

    def _account(self, seq: int, event: AccountOpened) -> None:
        if event.account in self._accounts:
            self.report.fail(seq, "stream-versions", f"account {event.account} opened twice")
        self._accounts[event.account] = event

    def _certificate_issued(self, seq: int, event: CertificateIssued | CertificateRekeyed) -> None:
        certificate = self._certificate(seq, event.certificate)
        if certificate is None:
            return
        keys = self.broker_keys
        if keys.for_certificate(certificate) != keys.for_seq(seq):
            # A retired key (stolen, say) cannot add certificates after its rotation.
            self.report.fail(seq, "certificate-signatures", "certificate of a key not in force")
        self._held[event.account] = certificate
        self._issued.add(event.certificate)
        role = self._role_of(event.account)
        if (certificate.subject, certificate.serial) != (event.account, event.serial):
            self.report.fail(seq, "certificate-signatures", "certificate names another account")
        elif role is None or certificate.role != role:
            self.report.fail(seq, "certificate-signatures", "certificate role differs from account")
        if certificate.issuer != self.broker_id:
            self.report.fail(seq, "certificate-signatures", "certificate of another issuer")
        if event.serial in self._serials:
            self.report.fail(seq, "certificate-signatures", f"serial {event.serial} reused")
        self._serials.add(event.serial)

    def _certificate_rekeyed(self, seq: int, event: CertificateRekeyed) -> None:
        """New keys certified on the old certificate's authority: both signatures must hold."""
        old = self._held.get(event.account)
        problem = None
        try:
            request = decode_as(RekeyRequest, event.request)
            if old is None or old.serial != event.old_serial or request.serial != old.serial:
                raise RekeyError("it does not replace the account's certificate")
            check_rekey_request(request, event.account, self.broker_id, old.sign_key)
            new = decode_certificate(decode_signed(event.certificate).body)
            if (new.sign_key, new.agree_key) != (request.sign_key, request.agree_key):
                raise RekeyError("the certificate is for other keys than requested")
        except (MalformedMessageError, RekeyError) as exc:
            problem = str(exc)
        if problem is not None:
            self.report.fail(seq, "certificate-signatures", f"rekey of {event.account}: {problem}")
        self._certificate_issued(seq, event)

    def _commitment(self, seq: int, event: CommitmentRegistered) -> None:
        report = self.report
        try:
            signed = decode_signed(event.commitment)
            commitment = decode_commitment(signed.body)
        except MalformedMessageError as exc:
            report.fail(seq, "commitment-signatures", f"undecodable commitment: {exc}")
            return
        certificate = self._certificate(seq, commitment.buyer_certificate)
        if certificate is None:
            return
        problems = []
        if commitment_id(signed.body) != event.commitment_id:
            problems.append("id is not the hash of the commitment")
        if (certificate.subject, commitment.vendor) != (event.buyer, event.vendor):
            problems.append("buyer or vendor differs from the signed commitment")
        if (commitment.length, commitment.unit_value) != (event.length, event.unit_value):
            problems.append("length or unit value differs from the signed commitment")
        if self._role_of(event.buyer) != "buyer" or self._role_of(event.vendor) != "vendor":
            problems.append("buyer or vendor has no such account")
        if commitment.buyer_certificate not in self._issued:
            # Signed by one of the broker's keys (a retired one, stolen?) but never issued
            # here: nobody was given it, so no chain under it moves money.
            problems.append("buyer certificate was never issued by this ledger")
        for problem in problems:
            report.fail(seq, "commitment-signatures", f"commitment {problem}")
        key, body, signature = certificate.sign_key, signed.body, signed.signature
        self._verify_later(
            seq,
            "commitment-signatures",
            "commitment",
            lambda: signature_ok(key, TAG_COMMITMENT, body, signature),
        )
        self._chains[event.commitment_id] = _Chain(
            event.commitment,
            event.buyer,
            event.vendor,
            commitment.length,
            commitment.unit_value,
            0,
            commitment.root,
        )

    def _redeemed(self, seq: int, event: PaywordsRedeemed) -> None:
        report = self.report
        state = self._chains.get(event.commitment_id)
        if state is None:
            report.fail(seq, "payword-chains", "redemption of an unregistered commitment")
            return
        report.redemptions += 1
        if event.commitment != state.signed:
            report.fail(seq, "payword-chains", "evidence differs from the registered commitment")
        if (event.buyer, event.vendor) != (state.buyer, state.vendor):
            report.fail(seq, "redemption-arithmetic", "buyer or vendor differs from commitment")
        if event.from_index != state.index or not spans(event.from_index, event.index, event.units):
            report.fail(seq, "redemption-arithmetic", "units do not follow the last redemption")
        if event.amount != amount_for(event.units, state.unit_value) or event.units <= 0:
            report.fail(seq, "redemption-arithmetic", "amount is not units times unit value")
        verdict = check_payword(event.payword, event.index, state.length, state.word, state.index)
        if verdict is Payword.BEYOND_LENGTH:
            report.fail(seq, "no-over-credit", f"index {event.index} beyond length {state.length}")
        elif verdict is Payword.OFF_CHAIN:
            report.fail(seq, "payword-chains", f"payword {event.index} does not hash to the chain")
        report.hashes_checked += max(event.index - state.index, 0)
        state.index, state.word = event.index, event.payword
        state.amount += event.amount
        if not within_commitment(state.amount, state.length, state.unit_value):
            report.fail(seq, "no-over-credit", "credited more than the commitment is worth")
        self._redemptions.append(_Redemption(seq, event))

    def _period_closed(self, seq: int, marker: PeriodClosed) -> None:
        report = self.report
        report.periods += 1
        report.fees += marker.fees
        if marker.after_sequence != self._last_through or marker.through_sequence >= seq:
            report.fail(seq, "billing", f"period {marker.period} does not follow the last one")
        covered = [
            r.event
            for r in self._redemptions
            if marker.after_sequence < r.seq <= marker.through_sequence
        ]
        currencies = {name: opened.currency for name, opened in self._accounts.items()}
        expected = bill(
            covered,
            marker.period,
            marker.after_sequence,
            marker.through_sequence,
            marker.fee_basis_points,
            currencies,
            marker.at,
        )
        stored = [*self._period_events.pop(marker.period, []), marker]
        if expected != stored:
            report.fail(seq, "billing", f"period {marker.period} invoices differ from redemptions")
        if marker.debited != marker.credited + marker.fees:
            report.fail(seq, "billing", f"period {marker.period}: debits != credits + fees")
        self._last_through = marker.through_sequence
        self._redemptions = [r for r in self._redemptions if r.seq > marker.through_sequence]
