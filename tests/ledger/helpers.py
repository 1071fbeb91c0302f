"""Small event factories for ledger tests."""

from __future__ import annotations

from protocol.broker_events import AccountOpened, SettlementRecorded


def opened(account: str, at: int = 1_000) -> AccountOpened:
    return AccountOpened(
        at=at, account=account, role="buyer", credit_limit=100, currency="EUR", token_nonce=b"n"
    )


def settled(account: str, amount: int, at: int = 2_000) -> SettlementRecorded:
    return SettlementRecorded(at=at, account=account, amount=amount, reference=f"ref-{amount}")
