"""Evidence checks on the money: redemptions, payword chain, total charged, billing.

Each redemption follows the last, the paywords hash down to the root, the charged total
adds up, and every billing period bills what it covers. The rules are the broker's own
(``protocol.money_rules``), applied to what it recorded.
"""

from __future__ import annotations

from broker_ledger.evidence_bundle import EventItem, Evidence, LinePart
from broker_ledger.evidence_report import EvidenceReport
from protocol import chain
from protocol.broker_events import (
    AnyBrokerEvent,
    BillingLine,
    CommitmentRegistered,
    InvoiceIssued,
    PaywordsRedeemed,
    PeriodClosed,
    StatementIssued,
)
from protocol.money_rules import Payword, amount_for, check_payword, hashes_to_root, spans


def check_redemptions(
    report: EvidenceReport, evidence: Evidence, decoded: list[tuple[EventItem, AnyBrokerEvent]]
) -> list[tuple[int, PaywordsRedeemed]]:
    """Each redemption picks up where the last one stopped, for units times unit value."""
    report.start("redemptions", "redemption-amounts")
    part = evidence.part.commitment
    own = f"commitment:{evidence.commitment_id.hex()}"
    redemptions = [
        (item.row.seq, event)
        for item, event in decoded
        if item.row.stream == own and isinstance(event, PaywordsRedeemed)
    ]
    registered = next(
        (
            item.row.seq
            for item, e in decoded
            if item.row.stream == own and isinstance(e, CommitmentRegistered)
        ),
        None,
    )
    reached = 0
    for seq, event in redemptions:
        if registered is None or seq < registered:
            report.fail("redemptions", f"event {seq}: a redemption before the registration")
        if event.commitment != evidence.signed:
            report.fail("redemptions", f"event {seq}: redeemed with other commitment bytes")
        if (event.buyer, event.vendor) != (part.buyer, part.vendor):
            report.fail("redemptions", f"event {seq}: credits another buyer or vendor")
        if event.from_index != reached:
            report.fail(
                "redemptions",
                f"event {seq}: redeems from index {event.from_index}, but the previous"
                f" redemption reached {reached}",
            )
        if event.index <= event.from_index or not spans(event.from_index, event.index, event.units):
            report.fail(
                "redemptions",
                f"event {seq}: {event.units} units do not take index {event.from_index}"
                f" to {event.index}",
            )
        if event.amount != amount_for(event.units, part.unit_value):
            report.fail(
                "redemption-amounts",
                f"event {seq}: amount {event.amount} is not {event.units} units"
                f" x unit value {part.unit_value}",
            )
        reached = event.index
    last_word = redemptions[-1][1].payword if redemptions else evidence.root
    highest = evidence.part.highest
    if reached != highest.index:
        report.fail(
            "redemptions",
            f"the last redemption reaches index {reached}, the bundle claims {highest.index}",
        )
    elif last_word != evidence.payword:
        report.fail("redemptions", "the claimed highest payword is not the one last redeemed")
    return redemptions


def check_payword_chain(
    report: EvidenceReport,
    evidence: Evidence,
    redemptions: list[tuple[int, PaywordsRedeemed]],
    signed_length: int | None,
) -> None:
    """The redeemed paywords, and the claimed highest one, hash down to the root."""
    report.start("payword-chain")
    # The signed length bounds the work: a claimed one could make the walk arbitrarily long.
    length = min(evidence.part.commitment.length, signed_length or chain.MAX_CHAIN_LENGTH)
    word, index, intact = evidence.root, 0, True
    for seq, event in redemptions:
        if check_payword(event.payword, event.index, length, word, index) is not Payword.REDEEMABLE:
            report.fail(
                "payword-chain",
                f"event {seq}: payword {event.index} does not hash down to payword {index}",
            )
            intact = False
            break
        word, index = event.payword, event.index
    claimed = evidence.part.highest.index
    if intact and (index, word) == (claimed, evidence.payword):
        return  # the segments compose: the highest payword hashes to the root in `index` steps
    if claimed > length:
        report.fail("payword-chain", f"index {claimed} is beyond the chain's length {length}")
    elif not hashes_to_root(evidence.payword, claimed, evidence.root):
        report.fail(
            "payword-chain", f"the highest payword does not hash to the root in {claimed} steps"
        )


def check_total(
    report: EvidenceReport, evidence: Evidence, redemptions: list[tuple[int, PaywordsRedeemed]]
) -> None:
    """The charged total is the highest index times unit value, and what was redeemed."""
    report.start("total-charged")
    charged = evidence.part.charged
    unit_value = evidence.part.commitment.unit_value
    index = evidence.part.highest.index
    worth = amount_for(index, unit_value)
    if charged.total != worth:
        report.fail(
            "total-charged",
            f"charged {charged.total}, but index {index} x unit value {unit_value} is {worth}",
        )
    redeemed = sum(event.amount for _, event in redemptions)
    if redeemed != charged.total:
        report.fail("total-charged", f"the redemptions add up to {redeemed}, not {charged.total}")
    if charged.unbilled < 0 or charged.billed + charged.unbilled != charged.total:
        report.fail("total-charged", "billed and unbilled do not add up to the total")


def check_billing(
    report: EvidenceReport,
    evidence: Evidence,
    decoded: list[tuple[EventItem, AnyBrokerEvent]],
    redemptions: list[tuple[int, PaywordsRedeemed]],
) -> None:
    """Each billing period bills exactly the redemptions it covers, on both sides."""
    report.start("billing")
    part = evidence.part
    by_seq = {item.row.seq: event for item, event in decoded}
    billed, covered = 0, 0
    for entry in part.billing:
        name = entry.period
        marker = by_seq.get(entry.closed_seq)
        if not (
            isinstance(marker, PeriodClosed)
            and marker.period == name
            and (marker.after_sequence, marker.through_sequence)
            == (entry.after_sequence, entry.through_sequence)
        ):
            report.fail("billing", f"period {name}: no matching closing event {entry.closed_seq}")
        share = [
            e for seq, e in redemptions if entry.after_sequence < seq <= entry.through_sequence
        ]
        units, amount = sum(e.units for e in share), sum(e.amount for e in share)
        covered += len(share)
        if (units, amount) != (entry.units, entry.amount):
            report.fail(
                "billing",
                f"period {name}: the redemptions it covers come to {units} units, {amount};"
                f" the bundle says {entry.units} units, {entry.amount}",
            )
        invoice = by_seq.get(entry.invoice_seq)
        if not (
            isinstance(invoice, InvoiceIssued)
            and (invoice.period, invoice.buyer) == (name, part.commitment.buyer)
            and _has_line(invoice.lines, part.commitment.vendor, entry.invoice_line, units, amount)
        ):
            report.fail("billing", f"period {name}: the buyer's invoice does not bill this")
        statement = by_seq.get(entry.statement_seq)
        if not (
            isinstance(statement, StatementIssued)
            and (statement.period, statement.vendor) == (name, part.commitment.vendor)
            and _has_line(
                statement.lines, part.commitment.buyer, entry.statement_line, units, amount
            )
        ):
            report.fail("billing", f"period {name}: the vendor's statement does not credit this")
        billed += entry.amount
    if covered > len(redemptions):
        report.fail("billing", "billing periods overlap: a redemption is billed twice")
    if billed != part.charged.billed:
        report.fail("billing", f"the periods bill {billed}, the bundle says {part.charged.billed}")


def _has_line(
    lines: list[BillingLine], counterparty: str, line: LinePart, units: int, amount: int
) -> bool:
    found = [x for x in lines if x.counterparty == counterparty]
    return (
        len(found) == 1
        and (found[0].units, found[0].amount) == (line.units, line.amount)
        and line.units >= units
        and line.amount >= amount
    )
