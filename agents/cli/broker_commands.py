"""``micropay broker``: create the broker, run its daemon, and the operator's actions."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec

from agents.cli.backup_commands import add_backup_parser
from agents.cli.dispute import add_dispute_parser
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
from agents.cli.status_commands import add_broker_status
from agents.daemons.broker_daemon import BrokerDaemon
from agents.daemons.broker_files import PUBLIC_FILE, init_broker
from agents.daemons.broker_metrics import broker_metrics
from agents.daemons.broker_service import BrokerService
from agents.daemons.operator_client import operator_request, sign_unsigned_tail
from agents.daemons.operator_protocol import (
    Asks,
    ClosePeriod,
    GrantedT,
    OpenAccount,
    Refused,
    Revoke,
    SetAllowance,
)
from agents.ops.mosquitto import MosquittoFiles, add_user, generated_password
from agents.runtime.private_files import write_private
from agents.runtime.settings import bounded
from broker_ledger.billing import PERIOD, PERIOD_RULE
from protocol.broker import BrokerPolicy
from protocol.errors import LocalProtocolError


def cmd_broker_init(args: argparse.Namespace) -> int:
    """Create the broker's keys, identity file and ledger."""
    prepare(args, "broker", {"data_dir": Path("micropay-broker"), "id": "broker"})
    info = asyncio.run(init_broker(args.data_dir, args.id))
    print_json(
        {
            "broker": info.id,
            "sign_key": info.sign_key.hex(),
            "agree_key": info.agree_key.hex(),
            "identity_file": str(args.data_dir / PUBLIC_FILE),
        }
    )
    return 0


def cmd_broker_run(args: argparse.Namespace) -> int:
    """Run the broker daemon until SIGTERM/SIGINT."""
    prepare(
        args,
        "broker",
        {"data_dir": Path("micropay-broker"), "witness_interval": 30.0, "allowance_vendors": 4},
    )
    interval = float(args.witness_interval)
    if interval <= 0:
        raise CommandError("--witness-interval must be above 0 seconds")
    policy = broker_policy(args)

    async def run() -> None:
        registry, served = metrics_registry(args)
        try:
            service = await BrokerService.open(args.data_dir, policy, daemon=True)
            mqtt = mqtt_settings(args, service.core.account)
            daemon = BrokerDaemon(service, mqtt, interval)
            broker_metrics(daemon, registry)
            await daemon.run()
        finally:
            if served is not None:
                served.close()

    return run_daemon(run())


def broker_policy(args: argparse.Namespace) -> BrokerPolicy:
    """The broker's policy: scrip (docs/SCHEMES.md 3.13) and allowance settings (4.4)."""
    text = str(args.scrip_properties or "")
    properties = tuple(p.strip() for p in text.split(",") if p.strip())
    try:
        return BrokerPolicy(
            max_scrip_value=int(args.max_scrip_value),
            scrip_lifetime=float(args.scrip_lifetime),
            scrip_deposit_grace=float(args.scrip_deposit_grace),
            scrip_properties=properties,
            allowance_vendors=int(args.allowance_vendors),
        )
    except LocalProtocolError as exc:
        raise CommandError(str(exc)) from exc


def _operator(args: argparse.Namespace, request: Asks[GrantedT]) -> GrantedT:
    answer = asyncio.run(operator_request(args.data_dir, request))
    if isinstance(answer, Refused):
        raise CommandError(answer.error)
    return answer


def cmd_broker_open_account(args: argparse.Namespace) -> int:
    """Open an account, print its enrollment token (and MQTT password when asked)."""
    prepare(args, "broker", {"data_dir": Path("micropay-broker"), "mosquitto_dir": None})
    answer = _operator(
        args,
        OpenAccount(
            account=args.name,
            role=args.role,
            credit_limit=args.credit_limit,
            currency=args.currency,
            allowance=args.allowance,
        ),
    )
    result: dict[str, Any] = {"account": args.name, "role": args.role}
    if args.allowance:
        result["allowance"] = args.allowance
    if args.token_file is None:
        result["token"] = answer.token
    else:
        write_private(args.token_file, answer.token + "\n")
        result["token_file"] = str(args.token_file)
    if args.mosquitto_dir is not None:
        password = generated_password()
        add_user(MosquittoFiles(Path(args.mosquitto_dir)), args.name, password)
        result["mqtt_username"] = args.name
        result["mqtt_password"] = password
        result["note"] = "reload Mosquitto (SIGHUP) so it reads the new password"
    print_json(result)
    return 0


def _period(text: str) -> str:
    """An argparse type: a period name (``PERIOD_RULE``), or a usage error."""
    if not PERIOD.fullmatch(text):
        raise argparse.ArgumentTypeError(f"a period name is {PERIOD_RULE}, not {text!r:.60}")
    return text


def cmd_broker_close_period(args: argparse.Namespace) -> int:
    """Close a billing period (idempotent on the same terms) and print its summary."""
    prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    answer = _operator(args, ClosePeriod(period=args.period, fee_basis_points=args.fee_bps))
    print_json(msgspec.to_builtins(answer.summary))
    if not answer.summary.newly_closed:
        fee = answer.summary.fee_basis_points
        sys.stderr.write(
            f"period {args.period} was already closed (fee {fee} basis points): nothing changed\n"
        )
    return 0


def cmd_broker_revoke(args: argparse.Namespace) -> int:
    """Revoke an account's certificate and republish the revocation list."""
    prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    _operator(args, Revoke(account=args.name, reason=args.reason))
    print_json({"revoked": args.name})
    return 0


def cmd_broker_set_allowance(args: argparse.Namespace) -> int:
    """Set a buyer's daily off-line allowance (docs/SCHEMES.md §4); 0 turns it off."""
    prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    answer = _operator(args, SetAllowance(account=args.name, allowance=args.amount))
    print_json({"account": answer.account, "allowance": answer.allowance})
    return 0


def cmd_broker_sign_tail(args: argparse.Namespace) -> int:
    """Sign the head over events no signature covers, once an audit has vouched for them."""
    prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    first, last = asyncio.run(sign_unsigned_tail(args.data_dir, args.through))
    print_json({"signed_head": last, "events_now_covered": f"{first}..{last}"})
    return 0


def add_scrip_options(run: argparse.ArgumentParser) -> None:
    """The scrip policy of ``broker run`` (docs/SCHEMES.md 3.13)."""
    run.add_argument(
        "--max-scrip-value",
        type=bounded("max_scrip_value"),
        metavar="MINOR_UNITS",
        help="the largest scrip one mint makes (default 10000)",
    )
    run.add_argument(
        "--scrip-lifetime",
        type=bounded("scrip_lifetime", float),
        metavar="SECONDS",
        help="from minting to expiry, at most one day (default 86400)",
    )
    run.add_argument(
        "--scrip-deposit-grace",
        type=bounded("scrip_deposit_grace", float),
        metavar="SECONDS",
        help="deposits taken this long after expiry, then the rest returns (default 172800)",
    )
    run.add_argument(
        "--scrip-properties",
        metavar="LIST",
        help='properties set in every scrip, comma-separated (e.g. "country=DE"; default none)',
    )


def register_broker(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``micropay broker`` and its actions."""
    broker = commands.add_parser("broker", help="the broker: init, run, accounts, billing")
    sub = broker.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create keys, identity file and ledger")
    add_common(init, mqtt=False)
    init.add_argument("--id", help="the broker's id (default broker)")
    init.set_defaults(handler=cmd_broker_init)
    run = sub.add_parser("run", help="run the broker daemon")
    add_common(run)
    add_metrics(run)
    run.add_argument(
        "--witness-interval",
        type=bounded("witness_interval", float),
        metavar="SECONDS",
        help="publish the signed ledger head at most this often while it moves (default 30)",
    )
    add_scrip_options(run)
    run.add_argument(
        "--allowance-vendors",
        type=bounded("allowance_vendors"),
        metavar="K",
        help="vendors a buyer's daily allowance reservation covers (default 4)",
    )
    run.set_defaults(handler=cmd_broker_run)
    opened = sub.add_parser("open-account", help="open an account and print its token")
    add_common(opened, mqtt=False)
    opened.add_argument("name", help="account name (A-Z a-z 0-9 . _ -)")
    opened.add_argument("--role", choices=["buyer", "vendor"], required=True)
    opened.add_argument(
        "--credit-limit", type=bounded("credit_limit"), default=0, help="minor units (buyers)"
    )
    opened.add_argument("--currency", default="EUR", help="ISO 4217 code (default EUR)")
    opened.add_argument(
        "--allowance",
        type=bounded("allowance"),
        default=0,
        metavar="N",
        help="a buyer's daily off-line allowance per vendor, minor units (default 0: none)",
    )
    opened.add_argument(
        "--mosquitto-dir", type=Path, help="also create the MQTT user in this Mosquitto directory"
    )
    opened.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="write the one-time token to FILE (created 0600) instead of printing it",
    )
    opened.set_defaults(handler=cmd_broker_open_account)
    close = sub.add_parser(
        "close-period",
        help="close a billing period (idempotent)",
        description=(
            "Write one invoice per buyer and one statement per vendor over everything"
            " redeemed since the last period closed. Closing the same period again with the"
            " same --fee-bps changes nothing and exits 0; with another fee it is refused"
            " (exit 1), naming the terms it was closed on."
        ),
    )
    add_common(close, mqtt=False)
    close.add_argument(
        "period", type=_period, help=f"the period's name: {PERIOD_RULE.replace('%', '%%')}"
    )
    close.add_argument(
        "--fee-bps", type=bounded("fee_bps"), default=0, help="broker fee in basis points"
    )
    close.set_defaults(handler=cmd_broker_close_period)
    revoke = sub.add_parser("revoke", help="revoke an account's certificate")
    add_common(revoke, mqtt=False)
    revoke.add_argument("name")
    revoke.add_argument("--reason", default="operator")
    revoke.set_defaults(handler=cmd_broker_revoke)
    allowance = sub.add_parser(
        "set-allowance",
        help="set a buyer's daily off-line allowance (0: none)",
        description=(
            "What each vendor that takes grants may accept off-line from the buyer in one UTC"
            " day (docs/SCHEMES.md §4); the broker's daily grant gives less as the buyer's"
            " debits approach its credit limit. It applies from the buyer's next grant."
        ),
    )
    add_common(allowance, mqtt=False)
    allowance.add_argument("name", help="the buyer's account")
    allowance.add_argument("amount", type=bounded("allowance"), help="minor units per day")
    allowance.set_defaults(handler=cmd_broker_set_allowance)
    tail = sub.add_parser(
        "sign-tail",
        help="after an audit, sign a ledger head no signature covers (earlier versions)",
        description=(
            "A ledger written by an earlier version that stopped uncleanly ends with events"
            " no broker signature covers, and the broker refuses to start on it. Audit it"
            " first (`micropay audit LEDGER --broker-key ...`: only `signed-head` may fail),"
            " then sign its head here, naming the last event the audit saw. The daemon must"
            " be stopped; every link is checked again before anything is signed."
        ),
    )
    add_common(tail, mqtt=False)
    tail.add_argument(
        "--through", type=int, required=True, metavar="SEQ", help="the ledger's last event"
    )
    tail.set_defaults(handler=cmd_broker_sign_tail)
    add_broker_status(sub)
    add_backup_parser(sub, "broker")
    add_dispute_parser(sub)
