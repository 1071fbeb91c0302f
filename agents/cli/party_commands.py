"""``micropay vendor`` and ``micropay buyer``: the two parties that pay and get paid."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.cli.backup_commands import add_backup_parser
from agents.cli.options import (
    CommandError,
    add_common,
    add_metrics,
    metrics_registry,
    mqtt_settings,
    prepare,
    print_json,
    run_daemon,
)
from agents.cli.pay_summary import PaySession, interrupted, pay_side_by_side
from agents.cli.scrip_commands import run_mint, run_scrip_pay, scrip_held
from agents.cli.status_commands import add_vendor_status, party_dir
from agents.daemons.broker_files import read_public
from agents.daemons.buyer_agent import STORE_FILE as WALLET_FILE
from agents.daemons.buyer_agent import BuyerAgent, PayResult
from agents.daemons.buyer_metrics import buyer_metrics
from agents.daemons.buyer_scrip import DEFAULT_MINT
from agents.daemons.vendor_agent import VendorAgent
from agents.daemons.vendor_metrics import vendor_metrics
from agents.runtime.config_schema import COUNT
from agents.runtime.secret_input import secret, token_bytes
from agents.runtime.settings import bounded, require
from protocol.buyer import DEFAULT_RESERVE_AHEAD
from protocol.errors import LocalProtocolError
from protocol.messages import AllowanceGrant, OfferItem
from protocol.vendor import VendorTerms

BUYER_DEFAULTS: dict[str, Any] = {
    "data_dir": None,
    "name": None,
    "broker_pub": None,
    "timeout": 30.0,
    "reserve_ahead": DEFAULT_RESERVE_AHEAD,
    "token": None,
    "token_file": None,
}


def enrollment_token(args: argparse.Namespace) -> bytes | None:
    """The token from --token-file or MICROPAY_TOKEN (never from the command line)."""
    text = secret(args.token, args.token_file, "enrollment token")
    source = str(args.token_file) if args.token_file else "MICROPAY_TOKEN"
    return token_bytes(text, source)


# --- vendor ------------------------------------------------------------------------------


def _item(text: str) -> OfferItem:
    name, _, price = text.partition("=")
    try:
        value = int(price)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("items are NAME=PRICE (price in minor units)") from exc
    if not name or not 1 <= value <= COUNT:
        raise argparse.ArgumentTypeError(f"items are NAME=PRICE with a price of 1 to {COUNT:,}")
    return OfferItem(name, value)


MAX_ITEM_NAME = 256  # the wire's Text


def _item_name(text: str) -> str:
    if len(text) > MAX_ITEM_NAME:
        raise argparse.ArgumentTypeError("an item name is at most 256 characters")
    return text


def cmd_vendor_run(args: argparse.Namespace) -> int:
    """Run a vendor daemon until SIGTERM/SIGINT (enrolling first with --token)."""
    prepare(
        args,
        "vendor",
        {
            "data_dir": None,
            "name": None,
            "broker_pub": None,
            "token": None,
            "token_file": None,
            "unit_value": 1,
            "currency": "EUR",
            "max_jump": 1000,
            "max_length": 1_000_000,
            "online": False,
            "online_above": None,
            "allowance": False,
            "scrip": False,
            "scrip_online": False,
            "redeem_interval": 60,
        },
    )
    require(args, "name", "broker_pub")
    data_dir = party_dir(args)
    try:
        terms = VendorTerms(
            unit_value=args.unit_value,
            currency=args.currency,
            max_jump=args.max_jump,
            max_length=args.max_length,
            online=bool(args.online) or args.online_above is not None,
            online_above=int(args.online_above or 0),
            allowance=bool(args.allowance),
            items=tuple(args.item or ()),
            scrip=bool(args.scrip or args.scrip_online),
            scrip_online=bool(args.scrip_online),
            redeem_interval=float(args.redeem_interval),
        )
    except LocalProtocolError as exc:
        raise CommandError(str(exc)) from exc

    token = enrollment_token(args)

    async def run() -> None:
        info = read_public(args.broker_pub)
        registry, served = metrics_registry(args)
        try:
            agent = await VendorAgent.open(
                data_dir, args.name, info, terms, mqtt_settings(args, args.name)
            )
            agent.token = token
            vendor_metrics(agent, registry)
            await agent.run()
        finally:
            if served is not None:
                served.close()

    return run_daemon(run())


# --- buyer -------------------------------------------------------------------------------


async def _buyer(args: argparse.Namespace, vendors: list[str] | None = None) -> BuyerAgent:
    """The buyer of this command; ``vendors``: the only ones whose offers it reads."""
    require(args, "name", "broker_pub")
    data_dir = party_dir(args)
    info = read_public(args.broker_pub)
    settings = mqtt_settings(args, args.name)
    return await BuyerAgent.open(
        data_dir,
        args.name,
        info,
        settings,
        reserve_ahead=int(args.reserve_ahead),
        vendors=vendors,
    )


def cmd_buyer_enroll(args: argparse.Namespace) -> int:
    """Enroll with the operator's token and keep the certificate in the wallet."""
    prepare(args, "buyer", BUYER_DEFAULTS)

    token = enrollment_token(args)
    if token is None:
        raise CommandError("give the enrollment token in --token-file FILE or MICROPAY_TOKEN")

    async def run() -> int:
        buyer = await _buyer(args)
        return await buyer.run(lambda: buyer.enroll(token), args.timeout)

    print_json({"enrolled": args.name, "certificate_serial": asyncio.run(run())})
    return 0


def cmd_buyer_pay(args: argparse.Namespace) -> int:
    """Pay one vendor or several at once, wait for their receipts, print what was paid.

    Several vendors are paid side by side over one connection and one wallet, each
    ``--payments`` times; the answer is then a JSON list with one object per vendor. On
    Ctrl-C it says what was paid so far.
    """
    prepare(args, "buyer", BUYER_DEFAULTS)
    vendors: list[str] = list(dict.fromkeys(args.vendor))  # each once, in the order given
    if args.scheme == "scrip":
        answers = asyncio.run(_scrip_pay(args, vendors))
        print_json(answers[0] if len(answers) == 1 else answers)
        return 0
    data_dir = party_dir(args)
    sessions = [PaySession(vendor, data_dir / WALLET_FILE) for vendor in vendors]

    async def run() -> list[dict[str, Any]]:
        registry, served = metrics_registry(args)  # scraped while this command runs
        try:
            buyer = await _buyer(args, vendors)  # their offers, not every vendor's
            await buyer_metrics(buyer, registry)
            for session in sessions:
                await session.start(buyer)

            def pay(vendor: str) -> Coroutine[Any, Any, PayResult]:
                return buyer.pay(
                    vendor,
                    args.payments,
                    args.units,
                    mixed=args.mixed,
                    length=args.chain_length,
                    item=args.item_name,
                    timeout=args.timeout,
                )

            results = await buyer.run(
                lambda: pay_side_by_side(vendors, pay), args.timeout + args.payments / 100
            )
        finally:
            if served is not None:
                served.close()
        return [
            {
                "vendor": vendor,
                "payments": result.payments,
                "units": result.units,
                "acknowledged_index": result.acknowledged,
                "seconds": round(result.seconds, 3),
                "payments_per_second": round(result.payments / result.seconds)
                if result.seconds
                else None,
            }
            for vendor, result in zip(vendors, results, strict=True)
        ]

    try:
        answers = asyncio.run(run())
    except KeyboardInterrupt:
        return interrupted(sessions)
    print_json(answers[0] if len(answers) == 1 else answers)
    return 0


async def _scrip_pay(args: argparse.Namespace, vendors: list[str]) -> list[dict[str, Any]]:
    buyer = await _buyer(args, vendors)
    return await run_scrip_pay(buyer, args)


def cmd_buyer_mint(args: argparse.Namespace) -> int:
    """Buy scrip for one vendor from the broker; the wallet keeps it sealed."""
    prepare(args, "buyer", BUYER_DEFAULTS)

    async def run() -> dict[str, Any]:
        return await run_mint(await _buyer(args, [args.vendor]), args)

    print_json(asyncio.run(run()))
    return 0


def cmd_buyer_balance(args: argparse.Namespace) -> int:
    """Ask the broker what this buyer owes and may still pay, and its open invoice.

    ``debited`` counts what vendors redeemed; what they hold and have not redeemed yet
    comes from the wallet, which knows what it paid.
    """
    prepare(args, "buyer", BUYER_DEFAULTS)

    async def run() -> dict[str, Any]:
        buyer = await _buyer(args)

        async def both() -> dict[str, Any]:
            grant, why = await buyer.allowance(args.timeout)  # first: its reservation shows
            balance = await buyer.balance(args.timeout)
            invoice = await buyer.invoice(args.timeout)
            paid = await buyer.paid()  # by this wallet; vendors redeem it later
            scrip = await scrip_held(buyer)  # in the wallet; the broker reserves its value
            return {
                "account": balance.account,
                "currency": balance.currency,
                "state": "revoked" if balance.revoked else "active",
                "credit_limit": balance.credit_limit,
                "debited": balance.debited,
                "paid_not_redeemed": max(paid - balance.debited, 0),
                "reserved": balance.reserved,
                "invoice": [
                    {"vendor": line.counterparty, "units": line.units, "amount": line.amount}
                    for line in invoice.lines
                ],
                "allowance": allowance_shown(buyer, grant, why),
                "scrip": scrip,
            }

        return await buyer.run(both, args.timeout)

    print_json(asyncio.run(run()))
    return 0


def allowance_shown(buyer: BuyerAgent, grant: AllowanceGrant | None, why: str) -> dict[str, Any]:
    """Today's grant as ``balance`` shows it: per vendor, and what the wallet committed.

    ``committed_today`` counts this wallet's chains that end today, per vendor: an upper
    bound of what each vendor counted against the grant (it registers what does not fit).
    """
    if grant is None:
        return {"per_vendor": 0, "note": why}
    day = datetime.fromtimestamp(grant.day * 86_400, UTC).date().isoformat()
    vendors = sorted({channel.vendor for channel in buyer.core.channels.values()})
    committed = {vendor: buyer.committed_today(vendor) for vendor in vendors}
    return {
        "day": day,
        "per_vendor": grant.amount,
        "committed_today": {vendor: value for vendor, value in committed.items() if value},
    }


# --- the parsers -------------------------------------------------------------------------


def register_vendor(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``micropay vendor run``."""
    vendor = commands.add_parser("vendor", help="the vendor daemon")
    sub = vendor.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run a vendor daemon")
    add_common(run)
    add_metrics(run)
    run.add_argument("--name", help="the vendor's account name")
    run.add_argument("--broker-pub", type=Path, help="the broker's broker.pub.json")
    run.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="a 0600 file holding the enrollment token, first start only (or MICROPAY_TOKEN)",
    )
    run.add_argument(
        "--unit-value", type=bounded("unit_value"), help="value of one payword, minor units"
    )
    run.add_argument("--currency", help="ISO 4217 code (default EUR)")
    run.add_argument(
        "--max-jump", type=bounded("max_jump"), help="largest jump per payment (default 1000)"
    )
    run.add_argument("--max-length", type=bounded("max_length"), help="longest chain accepted")
    run.add_argument(
        "--online",
        action="store_const",
        const=True,
        help="register each commitment with the broker first",
    )
    run.add_argument(
        "--online-above",
        type=bounded("online_above"),
        metavar="AMOUNT",
        help="register only chains worth more than AMOUNT minor units, take smaller ones at"
        " once (implies --online)",
    )
    run.add_argument(
        "--allowance",
        action="store_const",
        const=True,
        help="accept chains off-line within buyers' daily grants, register above them",
    )
    run.add_argument(
        "--scrip",
        action="store_const",
        const=True,
        help="also take Millicent scrip, kept in a durable spent set and deposited",
    )
    run.add_argument(
        "--scrip-online",
        action="store_const",
        const=True,
        help="take scrip, depositing each payment with the broker before serving (implies"
        " --scrip; no spent set of its own)",
    )
    run.add_argument(
        "--redeem-interval", type=bounded("redeem_interval"), help="seconds between redemptions"
    )
    run.add_argument("--item", type=_item, action="append", help="offer item NAME=PRICE")
    run.set_defaults(handler=cmd_vendor_run)
    add_vendor_status(sub)
    add_backup_parser(sub, "vendor")


def register_buyer(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``micropay buyer`` and its actions (enroll, pay, balance)."""
    buyer = commands.add_parser("buyer", help="the buyer's wallet: enroll, pay, balance")
    sub = buyer.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_backup_parser(sub, "buyer")
    for action, handler, text in (
        ("enroll", cmd_buyer_enroll, "enroll with a token"),
        ("pay", cmd_buyer_pay, "pay a vendor"),
        ("mint", cmd_buyer_mint, "buy scrip for a vendor"),
        ("balance", cmd_buyer_balance, "balance and invoice of the open period"),
    ):
        parser = sub.add_parser(action, help=text)
        add_common(parser)
        parser.add_argument("--name", help="the buyer's account name")
        parser.add_argument("--broker-pub", type=Path, help="the broker's broker.pub.json")
        parser.add_argument(
            "--timeout", type=bounded("timeout", float), help="seconds to wait for answers"
        )
        parser.set_defaults(handler=handler)
        if action == "enroll":
            parser.add_argument(
                "--token-file",
                type=Path,
                metavar="FILE",
                help="a 0600 file holding the operator's token (or env MICROPAY_TOKEN)",
            )
        if action == "pay":
            add_metrics(parser)
            parser.add_argument(
                "vendor",
                nargs="+",
                help="the vendor to pay; several are paid side by side, each --payments times",
            )
            parser.add_argument(
                "--payments", type=bounded("payments"), default=1, help="how many payments"
            )
            parser.add_argument(
                "--units",
                type=bounded("units"),
                default=1,
                help="units per payment (max with --mixed)",
            )
            parser.add_argument("--mixed", action="store_true", help="random sizes 1..units")
            parser.add_argument(
                "--reserve-ahead",
                type=bounded("reserve_ahead"),
                metavar="UNITS",
                help="units the wallet marks spent ahead of its payments, so that it writes"
                " once per UNITS instead of once per payment; a crash loses at most these"
                " (0: write every payment)",
            )
            parser.add_argument(
                "--chain-length",
                type=bounded("chain_length"),
                default=100_000,
                help="paywords in a new chain",
            )
            parser.add_argument(
                "--item-name",
                type=_item_name,
                default="",
                help="what each payment buys: an item on the vendor's offer, paid in full",
            )
            parser.add_argument(
                "--scheme",
                choices=("payword", "scrip"),
                default="payword",
                help="pay with a PayWord chain (default) or with scrip, bought when short",
            )
            parser.add_argument(
                "--price",
                type=bounded("price"),
                help="scrip: what each payment pays, minor units (default: the item's price,"
                " else --units times the unit value)",
            )
            parser.add_argument(
                "--mint-value",
                type=bounded("mint_value"),
                default=DEFAULT_MINT,
                metavar="VALUE",
                help=f"scrip: what to buy when the wallet is short (default {DEFAULT_MINT})",
            )
        if action == "mint":
            parser.add_argument("vendor", help="the vendor the scrip is good at")
            parser.add_argument(
                "value", type=bounded("value"), help="what it is worth, in minor units"
            )
