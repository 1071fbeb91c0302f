"""``buyer pay`` around the payments: several vendors at once, and what Ctrl-C reports.

Ctrl-C ends a paying session wherever it is. The wallet already holds every payword
spent, so the next run resumes the channel and resends what the vendor has not
acknowledged; the operator still needs to know how far this run got, and exit 130 alone
does not say.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.cli.options import print_json
from agents.daemons.buyer_agent import BuyerAgent, BuyerError, PayResult
from agents.daemons.wallet_store import WalletStore, spent_on_disk

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


@dataclass
class PaySession:
    """The buyer paying ``vendor``, and how far each of its channels was spent before."""

    vendor: str
    wallet: Path
    buyer: BuyerAgent | None = None
    spent_before: dict[bytes, int] = field(default_factory=dict)

    async def start(self, buyer: BuyerAgent) -> None:
        """Note where the wallet's channels stand before this session pays anything."""
        self.buyer = buyer
        if isinstance(buyer.store, WalletStore):
            channels = await buyer.store.channels()
            self.spent_before = {channel.commitment_id: channel.spent for channel in channels}

    def so_far(self) -> dict[str, Any]:
        """Units and amount paid to the vendor in this session, and units it acknowledged."""
        paid = acknowledged = amount = 0
        channels = [] if self.buyer is None else self.buyer.core.channels.values()
        try:
            on_disk = spent_on_disk(self.wallet)
        except sqlite3.Error:
            on_disk = {}
        for channel in channels:
            if channel.vendor != self.vendor:
                continue
            before = self.spent_before.get(channel.id, 0)
            spent = on_disk.get(channel.id, before)  # what the wallet recorded was paid
            paid += spent - before
            acknowledged += max(0, min(channel.acknowledged, spent) - before)
            amount += (spent - before) * channel.unit_value
        return {
            "vendor": self.vendor,
            "interrupted": True,
            "units_paid": paid,
            "amount_paid": amount,
            "units_acknowledged": acknowledged,
        }


async def pay_side_by_side(
    vendors: list[str], pay: Callable[[str], Coroutine[Any, Any, PayResult]]
) -> list[PayResult]:
    """Pay every vendor at once; the first refusal stops the others and is the answer."""
    try:
        async with asyncio.TaskGroup() as payments:
            running = [payments.create_task(pay(vendor)) for vendor in vendors]
    except BaseExceptionGroup as failed:
        refusal = failed.subgroup(BuyerError)
        if refusal is not None:
            raise refusal.exceptions[0] from None
        raise
    return [task.result() for task in running]


def interrupted(sessions: list[PaySession]) -> int:
    """Ctrl-C while paying: say what each vendor was paid (one object, or a list); exit 130."""
    summaries = [session.so_far() for session in sessions]
    print_json(summaries[0] if len(summaries) == 1 else summaries)
    for session, summary in zip(sessions, summaries, strict=True):
        sys.stderr.write(
            f"micropay: interrupted: paid {session.vendor} {summary['units_paid']} units"
            f" (amount {summary['amount_paid']}), {summary['units_acknowledged']} acknowledged"
            " so far; the wallet keeps its place and resends the rest on the next run\n"
        )
    return EXIT_INTERRUPTED
