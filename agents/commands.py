"""The ``broker``, ``vendor``, ``buyer`` and ``mqtt`` sub-commands: parsing and handlers."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agents.broker_agent import (
    BrokerDaemon,
    BrokerService,
    BrokerSetupError,
    init_broker,
    operator_request,
    read_public,
)
from agents.buyer_agent import BuyerAgent, BuyerError
from agents.dispute import add_dispute_parser
from agents.keystore import KeyFileError
from agents.mosquitto import (
    MosquittoError,
    MosquittoFiles,
    TlsListener,
    add_user,
    generated_password,
    render,
)
from agents.mqtt import MqttSettings
from agents.settings import MQTT_KEYS, SettingsError, require, resolve, setup_logging
from agents.tls_certs import DEFAULT_DAYS, CertError, make_certs
from agents.vendor_agent import VendorAgent
from protocol.messages import OfferItem
from protocol.vendor import VendorTerms

MQTT_DEFAULTS: dict[str, Any] = {
    "mqtt_host": "127.0.0.1",
    "mqtt_port": 1883,
    "mqtt_username": None,
    "mqtt_password": None,
    "mqtt_tls_ca": None,
}
COMMON_DEFAULTS: dict[str, Any] = {"log_level": "info", "log_json": False}


class CommandError(Exception):
    """A command that cannot run as asked; its message is for the user."""


def add_common(parser: argparse.ArgumentParser, *, mqtt: bool = True) -> None:
    """Options every agent command takes."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="where state is kept")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default info)",
    )
    parser.add_argument(
        "--log-json", action="store_const", const=True, help="log one JSON object per line"
    )
    if mqtt:
        group = parser.add_argument_group("MQTT (env MICROPAY_MQTT_*; file [mqtt])")
        group.add_argument("--mqtt-host", help="broker address (default 127.0.0.1)")
        group.add_argument("--mqtt-port", type=int, help="broker port (default 1883)")
        group.add_argument("--mqtt-username", help="MQTT user (default: the agent's name)")
        group.add_argument("--mqtt-password", help="MQTT password (prefer the env variable)")
        group.add_argument("--mqtt-tls-ca", help="CA file: connect with TLS and verify")


def mqtt_settings(args: argparse.Namespace, name: str) -> MqttSettings:
    """Connection settings from resolved options."""
    if args.mqtt_tls_ca and not Path(args.mqtt_tls_ca).is_file():
        raise CommandError(f"no CA certificate at {args.mqtt_tls_ca} (--mqtt-tls-ca)")
    return MqttSettings(
        host=args.mqtt_host,
        port=int(args.mqtt_port),
        username=args.mqtt_username or name,
        password=args.mqtt_password,
        tls_ca=str(args.mqtt_tls_ca) if args.mqtt_tls_ca else None,
    )


def _prepare(args: argparse.Namespace, group: str, defaults: dict[str, Any]) -> None:
    resolve(args, group, {**COMMON_DEFAULTS, **MQTT_DEFAULTS, **defaults})
    setup_logging(args.log_level, bool(args.log_json))


def _print(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


# --- broker ------------------------------------------------------------------------------


def cmd_broker_init(args: argparse.Namespace) -> int:
    """Create the broker's keys, identity file and ledger."""
    _prepare(args, "broker", {"data_dir": Path("micropay-broker"), "id": "broker"})
    info = asyncio.run(init_broker(args.data_dir, args.id))
    _print(
        {
            "broker": info.id,
            "sign_key": info.sign_key.hex(),
            "agree_key": info.agree_key.hex(),
            "identity_file": str(args.data_dir / "broker.pub.json"),
        }
    )
    return 0


def cmd_broker_run(args: argparse.Namespace) -> int:
    """Run the broker daemon until SIGTERM/SIGINT."""
    _prepare(args, "broker", {"data_dir": Path("micropay-broker"), "witness_interval": 30.0})
    interval = float(args.witness_interval)
    if interval <= 0:
        raise CommandError("--witness-interval must be above 0 seconds")

    async def run() -> None:
        service = await BrokerService.open(args.data_dir)
        mqtt = mqtt_settings(args, service.core.account)
        await BrokerDaemon(service, mqtt, interval).run()

    asyncio.run(run())
    return 0


def _operator(args: argparse.Namespace, request: dict[str, Any]) -> dict[str, Any]:
    answer = asyncio.run(operator_request(args.data_dir, request))
    if not answer.get("ok"):
        raise CommandError(str(answer.get("error", "refused")))
    return answer


def cmd_broker_open_account(args: argparse.Namespace) -> int:
    """Open an account, print its enrollment token (and MQTT password when asked)."""
    _prepare(args, "broker", {"data_dir": Path("micropay-broker"), "mosquitto_dir": None})
    answer = _operator(
        args,
        {
            "command": "open-account",
            "account": args.name,
            "role": args.role,
            "credit_limit": args.credit_limit,
            "currency": args.currency,
        },
    )
    result: dict[str, Any] = {"account": args.name, "role": args.role, "token": answer["token"]}
    if args.mosquitto_dir is not None:
        password = generated_password()
        add_user(MosquittoFiles(Path(args.mosquitto_dir)), args.name, password)
        result["mqtt_username"] = args.name
        result["mqtt_password"] = password
        result["note"] = "reload Mosquitto (SIGHUP) so it reads the new password"
    _print(result)
    return 0


def cmd_broker_close_period(args: argparse.Namespace) -> int:
    """Close a billing period (idempotent) and print its summary."""
    _prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    answer = _operator(
        args,
        {"command": "close-period", "period": args.period, "fee_basis_points": args.fee_bps},
    )
    _print(answer["summary"])
    return 0


def cmd_broker_revoke(args: argparse.Namespace) -> int:
    """Revoke an account's certificate and republish the revocation list."""
    _prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    _operator(args, {"command": "revoke", "account": args.name, "reason": args.reason})
    _print({"revoked": args.name})
    return 0


def cmd_broker_status(args: argparse.Namespace) -> int:
    """Accounts, commitments and totals, from the daemon or the ledger."""
    _prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    answer = _operator(args, {"command": "status"})
    answer.pop("ok", None)
    _print(answer)
    return 0


# --- vendor ------------------------------------------------------------------------------


def _item(text: str) -> OfferItem:
    name, _, price = text.partition("=")
    try:
        return OfferItem(name, int(price))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("items are NAME=PRICE (price in minor units)") from exc


def cmd_vendor_run(args: argparse.Namespace) -> int:
    """Run a vendor daemon until SIGTERM/SIGINT (enrolling first with --token)."""
    _prepare(
        args,
        "vendor",
        {
            "data_dir": None,
            "name": None,
            "broker_pub": None,
            "token": None,
            "unit_value": 1,
            "currency": "EUR",
            "max_jump": 1000,
            "max_length": 1_000_000,
            "online": False,
            "redeem_interval": 60,
        },
    )
    require(args, "name", "broker_pub")
    data_dir = args.data_dir or Path(f"micropay-{args.name}")
    terms = VendorTerms(
        unit_value=args.unit_value,
        currency=args.currency,
        max_jump=args.max_jump,
        max_length=args.max_length,
        online=bool(args.online),
        items=tuple(args.item or ()),
        redeem_interval=float(args.redeem_interval),
    )

    async def run() -> None:
        info = read_public(args.broker_pub)
        agent = await VendorAgent.open(
            data_dir, args.name, info, terms, mqtt_settings(args, args.name)
        )
        if args.token:
            agent.token = bytes.fromhex(args.token)
        await agent.run()

    asyncio.run(run())
    return 0


# --- buyer -------------------------------------------------------------------------------

BUYER_DEFAULTS: dict[str, Any] = {"data_dir": None, "name": None, "broker_pub": None, "timeout": 30}


async def _buyer(args: argparse.Namespace) -> BuyerAgent:
    require(args, "name", "broker_pub")
    data_dir = args.data_dir or Path(f"micropay-{args.name}")
    info = read_public(args.broker_pub)
    return await BuyerAgent.open(data_dir, args.name, info, mqtt_settings(args, args.name))


def cmd_buyer_enroll(args: argparse.Namespace) -> int:
    """Enroll with the operator's token and keep the certificate in the wallet."""
    _prepare(args, "buyer", BUYER_DEFAULTS)

    async def run() -> int:
        buyer = await _buyer(args)
        return await buyer.run(lambda: buyer.enroll(bytes.fromhex(args.token)), args.timeout)

    _print({"enrolled": args.name, "certificate_serial": asyncio.run(run())})
    return 0


def cmd_buyer_pay(args: argparse.Namespace) -> int:
    """Pay a vendor, wait for its receipts and print what was paid."""
    _prepare(args, "buyer", BUYER_DEFAULTS)

    async def run() -> dict[str, Any]:
        buyer = await _buyer(args)
        result = await buyer.run(
            lambda: buyer.pay(
                args.vendor,
                args.payments,
                args.units,
                mixed=args.mixed,
                length=args.chain_length,
                item=args.item_name,
                timeout=args.timeout,
            ),
            args.timeout + args.payments / 100,
        )
        return {
            "vendor": args.vendor,
            "payments": result.payments,
            "units": result.units,
            "acknowledged_index": result.acknowledged,
            "seconds": round(result.seconds, 3),
            "payments_per_second": round(result.payments / result.seconds)
            if result.seconds
            else None,
        }

    _print(asyncio.run(run()))
    return 0


def cmd_buyer_balance(args: argparse.Namespace) -> int:
    """Ask the broker what this buyer owes, and its invoice of the open period."""
    _prepare(args, "buyer", BUYER_DEFAULTS)

    async def run() -> dict[str, Any]:
        buyer = await _buyer(args)

        async def both() -> dict[str, Any]:
            balance = await buyer.balance(args.timeout)
            invoice = await buyer.invoice(args.timeout)
            return {
                "account": balance.account,
                "currency": balance.currency,
                "debited": balance.debited,
                "reserved": balance.reserved,
                "invoice": [
                    {"vendor": line.counterparty, "units": line.units, "amount": line.amount}
                    for line in invoice.lines
                ],
            }

        return await buyer.run(both, args.timeout)

    _print(asyncio.run(run()))
    return 0


# --- mqtt --------------------------------------------------------------------------------


def cmd_mqtt_render(args: argparse.Namespace) -> int:
    """Write the project's Mosquitto configuration, ACL and password file into a directory."""
    tls = None
    if args.certs is not None:
        tls = TlsListener(args.tls_port or 8883, args.certs, args.tls_host)
    elif args.tls_port is not None or args.tls_host is not None:
        raise CommandError("--tls-port and --tls-host need --certs DIR")
    files = render(args.directory, args.port, args.host, tls=tls)
    _print({"config": str(files.config), "acl": str(files.acl), "passwords": str(files.passwords)})
    return 0


def cmd_mqtt_certs(args: argparse.Namespace) -> int:
    """Create a local CA and the TLS certificates for Mosquitto and its clients."""
    try:
        report = make_certs(
            args.directory,
            hosts=args.host or (),
            clients=args.client or (),
            days=args.days,
            force=args.force,
        )
    except CertError as exc:
        raise CommandError(str(exc)) from exc
    _print({"written": [str(p) for p in report.written], "kept": [str(p) for p in report.kept]})
    return 0


def cmd_mqtt_add_user(args: argparse.Namespace) -> int:
    """Create or update an MQTT user (the ACL confines it by its name)."""
    password = args.password or generated_password()
    add_user(MosquittoFiles(args.directory), args.name, password)
    _print({"username": args.name, "password": password})
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # noqa: PLR0915 - the command tree, read top to bottom
    """Add the agent command groups to the top-level parser."""
    broker = commands.add_parser("broker", help="the broker: init, run, accounts, billing")
    sub = broker.add_subparsers(dest="action", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create keys, identity file and ledger")
    add_common(init, mqtt=False)
    init.add_argument("--id", help="the broker's id (default broker)")
    init.set_defaults(handler=cmd_broker_init)
    run = sub.add_parser("run", help="run the broker daemon")
    add_common(run)
    run.add_argument(
        "--witness-interval",
        type=float,
        metavar="SECONDS",
        help="publish the signed ledger head at most this often while it moves (default 30)",
    )
    run.set_defaults(handler=cmd_broker_run)
    opened = sub.add_parser("open-account", help="open an account and print its token")
    add_common(opened, mqtt=False)
    opened.add_argument("name", help="account name (A-Z a-z 0-9 . _ -)")
    opened.add_argument("--role", choices=["buyer", "vendor"], required=True)
    opened.add_argument("--credit-limit", type=int, default=0, help="minor units (buyers)")
    opened.add_argument("--currency", default="EUR", help="ISO 4217 code (default EUR)")
    opened.add_argument(
        "--mosquitto-dir", type=Path, help="also create the MQTT user in this Mosquitto directory"
    )
    opened.set_defaults(handler=cmd_broker_open_account)
    close = sub.add_parser("close-period", help="close a billing period (idempotent)")
    add_common(close, mqtt=False)
    close.add_argument("period", help="the period's name, e.g. 2026-11")
    close.add_argument("--fee-bps", type=int, default=0, help="broker fee in basis points")
    close.set_defaults(handler=cmd_broker_close_period)
    revoke = sub.add_parser("revoke", help="revoke an account's certificate")
    add_common(revoke, mqtt=False)
    revoke.add_argument("name")
    revoke.add_argument("--reason", default="operator")
    revoke.set_defaults(handler=cmd_broker_revoke)
    status = sub.add_parser("status", help="accounts, commitments and totals")
    add_common(status, mqtt=False)
    status.set_defaults(handler=cmd_broker_status)
    add_dispute_parser(sub)

    vendor = commands.add_parser("vendor", help="the vendor daemon")
    sub = vendor.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run a vendor daemon")
    add_common(run)
    run.add_argument("--name", help="the vendor's account name")
    run.add_argument("--broker-pub", type=Path, help="the broker's broker.pub.json")
    run.add_argument("--token", help="enrollment token (first start only)")
    run.add_argument("--unit-value", type=int, help="value of one payword, minor units")
    run.add_argument("--currency", help="ISO 4217 code (default EUR)")
    run.add_argument("--max-jump", type=int, help="largest jump per payment (default 1000)")
    run.add_argument("--max-length", type=int, help="longest chain accepted")
    run.add_argument(
        "--online",
        action="store_const",
        const=True,
        help="register each commitment with the broker first",
    )
    run.add_argument("--redeem-interval", type=int, help="seconds between redemptions")
    run.add_argument("--item", type=_item, action="append", help="offer item NAME=PRICE")
    run.set_defaults(handler=cmd_vendor_run)

    buyer = commands.add_parser("buyer", help="the buyer's wallet: enroll, pay, balance")
    sub = buyer.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, handler, text in (
        ("enroll", cmd_buyer_enroll, "enroll with a token"),
        ("pay", cmd_buyer_pay, "pay a vendor"),
        ("balance", cmd_buyer_balance, "balance and invoice of the open period"),
    ):
        parser = sub.add_parser(action, help=text)
        add_common(parser)
        parser.add_argument("--name", help="the buyer's account name")
        parser.add_argument("--broker-pub", type=Path, help="the broker's broker.pub.json")
        parser.add_argument("--timeout", type=float, help="seconds to wait for answers")
        parser.set_defaults(handler=handler)
        if action == "enroll":
            parser.add_argument("--token", required=True, help="the operator's token (hex)")
        if action == "pay":
            parser.add_argument("vendor", help="the vendor to pay")
            parser.add_argument("--payments", type=int, default=1, help="how many payments")
            parser.add_argument(
                "--units", type=int, default=1, help="units per payment (max with --mixed)"
            )
            parser.add_argument("--mixed", action="store_true", help="random sizes 1..units")
            parser.add_argument(
                "--chain-length", type=int, default=100_000, help="paywords in a new chain"
            )
            parser.add_argument("--item-name", default="", help="what the payments are for")

    mqtt = commands.add_parser("mqtt", help="Mosquitto configuration and users")
    sub = mqtt.add_subparsers(dest="action", metavar="ACTION", required=True)
    rendered = sub.add_parser("render", help="write mosquitto.conf, ACL and password file")
    rendered.add_argument("directory", type=Path)
    rendered.add_argument("--port", type=int, default=1883)
    rendered.add_argument("--host", default="127.0.0.1")
    rendered.add_argument("--certs", type=Path, metavar="DIR", help="enable TLS: `mqtt certs` dir")
    rendered.add_argument("--tls-port", type=int, help="TLS listener port (default 8883)")
    rendered.add_argument("--tls-host", help="TLS listener address (default: --host)")
    rendered.set_defaults(handler=cmd_mqtt_render)
    certs = sub.add_parser("certs", help="create a local CA and TLS certificates")
    certs.add_argument("directory", type=Path)
    certs.add_argument(
        "--host", action="append", help="a name or address in the server certificate (repeat)"
    )
    certs.add_argument("--client", action="append", help="also issue a client certificate")
    certs.add_argument("--days", type=int, default=DEFAULT_DAYS, help="validity (default 825)")
    certs.add_argument(
        "--force", action="store_true", help="replace the CA (what it issued is no longer trusted)"
    )
    certs.set_defaults(handler=cmd_mqtt_certs)
    user = sub.add_parser("add-user", help="create or update an MQTT user")
    user.add_argument("directory", type=Path, help="a directory written by `mqtt render`")
    user.add_argument("name")
    user.add_argument("--password", help="default: generated and printed")
    user.set_defaults(handler=cmd_mqtt_add_user)


USER_ERRORS = (
    CommandError,
    SettingsError,
    BrokerSetupError,
    KeyFileError,
    BuyerError,
    MosquittoError,
)
__all__ = ["MQTT_KEYS", "USER_ERRORS", "register"]
