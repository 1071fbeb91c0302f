"""Operator requests carried out on the broker service, from the socket or offline.

Every value is bounded here (``admin_input``) before anything reaches the core or the
ledger; a refusal is an answer, never an exception in the daemon.
"""

from __future__ import annotations

from typing import assert_never

from agents.daemons import admin_input
from agents.daemons.broker_service import BrokerService
from agents.daemons.operator_protocol import (
    AccountOpened,
    AllowanceSet,
    Answer,
    BrokerStatus,
    ClosePeriod,
    OpenAccount,
    OperatorRequest,
    PeriodClosed,
    PeriodReport,
    Refused,
    Revoke,
    Revoked,
    SetAllowance,
    Status,
)
from broker_ledger.billing import BASIS_POINTS, PeriodSummary
from broker_ledger.store import LedgerError
from protocol.money_rules import MAX_TOTAL


async def run_admin_request(service: BrokerService, request: OperatorRequest) -> Answer:
    """Execute one operator request; whatever stops it is the operator's refusal."""
    try:
        return await _carry_out(service, request)
    except admin_input.AdminInputError as exc:
        return Refused(error=str(exc))
    except LedgerError as exc:
        return Refused(error=f"the ledger refused the write ({exc}); the broker stops")
    except Exception as exc:  # noqa: BLE001 - report every refusal to the operator
        return Refused(error=str(exc))


async def _carry_out(service: BrokerService, request: OperatorRequest) -> Answer:
    match request:
        case OpenAccount():
            token = await service.open_account(
                admin_input.name("account", request.account),
                admin_input.role(request.role),
                admin_input.integer("credit_limit", request.credit_limit, 0, MAX_TOTAL),
                admin_input.text("currency", request.currency, 3),
                admin_input.integer("allowance", request.allowance, 0, MAX_TOTAL),
            )
            return AccountOpened(token=token.hex())
        case SetAllowance():
            account = admin_input.name("account", request.account)
            amount = admin_input.integer("allowance", request.allowance, 0, MAX_TOTAL)
            await service.set_allowance(account, amount)
            return AllowanceSet(account=account, allowance=amount)
        case Revoke():
            await service.revoke(
                admin_input.name("account", request.account),
                admin_input.text("reason", request.reason, 256),
            )
            return Revoked()
        case ClosePeriod():
            summary = await service.close_period(
                admin_input.period(request.period),
                admin_input.integer("fee_basis_points", request.fee_basis_points, 0, BASIS_POINTS),
            )
            return PeriodClosed(summary=period_report(summary))
        case Status():
            return broker_status(service)
        case _:
            assert_never(request)


def period_report(summary: PeriodSummary) -> PeriodReport:
    """What the operator is told of a closed period."""
    return PeriodReport(
        period=summary.period,
        through_sequence=summary.through_sequence,
        invoices=summary.invoices,
        statements=summary.statements,
        debited=summary.debited,
        credited=summary.credited,
        fees=summary.fees,
        newly_closed=summary.newly_closed,
        fee_basis_points=summary.fee_basis_points,
    )


def broker_status(service: BrokerService) -> BrokerStatus:
    """Accounts, commitments and totals as the core holds them now."""
    core = service.core
    totals = core.totals
    seq, head = service.store.head
    return BrokerStatus(
        accounts=len(core.accounts),
        enrolled=tuple(sorted(name for name, account in core.accounts.items() if account.serial)),
        commitments=len(core.chains),
        debited=sum(totals.debited.values()),
        credited=sum(totals.credited.values()),
        ledger_head=seq,
        ledger_head_hash=head.hex(),
        buyers=sum(1 for account in core.accounts.values() if account.role == "buyer"),
        vendors=sum(1 for account in core.accounts.values() if account.role == "vendor"),
        revoked=sum(1 for account in core.accounts.values() if account.serial in core.revoked),
        reserved=sum(totals.reserved.values()),
    )
