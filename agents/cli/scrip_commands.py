"""``micropay buyer mint`` and ``buyer pay --scheme scrip``: Millicent scrip from the wallet.

Scrip is bought from the broker for one vendor and spent there with one MAC per payment,
exact change coming back in the answer (docs/SCHEMES.md §3).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from agents.cli.tables import when
from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.buyer_scrip import mint, pay_with_scrip
from agents.daemons.wallet_store import ScripHolding


async def run_mint(buyer: BuyerAgent, args: argparse.Namespace) -> dict[str, Any]:
    """Buy the scrip ``args`` ask for and say what the wallet now holds."""

    async def job() -> dict[str, Any]:
        bought = await mint(buyer, args.vendor, int(args.value), args.timeout)
        return {
            "vendor": bought.vendor,
            "serial": bought.serial,
            "value": bought.value,
            "expires": when(bought.expires),
        }

    return await buyer.run(job, args.timeout)


async def run_scrip_pay(buyer: BuyerAgent, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Pay each vendor named in ``args`` with scrip, one after the other."""
    price = scrip_price(buyer, args)

    async def job() -> list[dict[str, Any]]:
        answers = []
        for vendor in dict.fromkeys(args.vendor):
            await buyer.offer(vendor, args.timeout)  # the price may be the offer's item's
            result = await pay_with_scrip(
                buyer,
                vendor,
                int(args.payments),
                price(vendor),
                item=args.item_name,
                mint_value=int(args.mint_value),
                timeout=args.timeout,
            )
            answers.append(
                {
                    "vendor": vendor,
                    "scheme": "scrip",
                    "payments": result.payments,
                    "paid": result.paid,
                    "minted": result.minted,
                    "scrip_held": result.held,
                    "seconds": round(result.seconds, 3),
                }
            )
        return answers

    return await buyer.run(job, args.timeout + int(args.payments) / 10)


def scrip_price(buyer: BuyerAgent, args: argparse.Namespace) -> Callable[[str], int]:
    """Each payment's price: ``--price``, else the named item's on the vendor's offer."""

    def price(vendor: str) -> int:
        if args.price is not None:
            return int(args.price)
        offer = buyer.core.offers[vendor].offer
        prices = {offered.item: offered.price for offered in offer.items}
        if args.item_name in prices:
            return prices[args.item_name]
        return offer.unit_value * int(args.units)

    return price


def holdings(held: list[ScripHolding]) -> list[dict[str, Any]]:
    """The wallet's scrip per vendor, for ``buyer balance``."""
    return [
        {
            "vendor": h.vendor,
            "pieces": h.pieces,
            "value": h.value,
            "first_expiry": when(h.expires),
        }
        for h in held
    ]


async def scrip_held(buyer: BuyerAgent) -> list[dict[str, Any]]:
    """What the wallet holds in scrip now, per vendor (read from the wallet only)."""
    return holdings(await buyer.store.scrip_held(int(time.time() * 1000)))
