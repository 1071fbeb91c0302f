"""The ``broker``, ``vendor``, ``buyer`` and ``mqtt`` sub-commands: parsing and handlers."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from agents.cli.dispute import add_dispute_parser
from agents.daemons.broker_agent import (
    BrokerDaemon,
    BrokerService,
    BrokerSetupError,
    init_broker,
    operator_request,
    read_public,
    sign_unsigned_tail,
)
from agents.daemons.buyer_agent import BuyerAgent, BuyerError
from agents.daemons.vendor_agent import VendorAgent
from agents.ops.mosquitto import (
    MosquittoError,
    MosquittoFiles,
    TlsListener,
    add_user,
    generated_password,
    render,
)
from agents.ops.tls_certs import DEFAULT_DAYS, CertError, make_certs
from agents.runtime.keystore import KeyFileError
from agents.runtime.loop import AgentFailedError
from agents.runtime.mqtt import MqttSettings
from agents.runtime.private_files import PermissionsError, write_private
from agents.runtime.secret_input import SecretInputError, read_secret_file, secret, token_bytes
from agents.runtime.settings import (
    MQTT_KEYS,
    SettingsError,
    bounded,
    require,
    resolve,
    setup_logging,
)
from broker_ledger.store import LedgerError
from protocol.messages import OfferItem
from protocol.vendor import VendorTerms

MQTT_DEFAULTS: dict[str, Any] = {
    "mqtt_host": "127.0.0.1",
    "mqtt_port": 1883,
    "mqtt_username": None,
    "mqtt_password": None,
    "mqtt_password_file": None,
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
        group.add_argument(
            "--mqtt-port", type=bounded("mqtt_port"), help="broker port (default 1883)"
        )
        group.add_argument("--mqtt-username", help="MQTT user (default: the agent's name)")
        group.add_argument(
            "--mqtt-password-file",
            type=Path,
            metavar="FILE",
            help="a 0600 file holding the MQTT password (or env MICROPAY_MQTT_PASSWORD)",
        )
        group.add_argument("--mqtt-tls-ca", help="CA file: connect with TLS and verify")


def mqtt_settings(args: argparse.Namespace, name: str) -> MqttSettings:
    """Connection settings from resolved options."""
    if args.mqtt_tls_ca and not Path(args.mqtt_tls_ca).is_file():
        raise CommandError(f"no CA certificate at {args.mqtt_tls_ca} (--mqtt-tls-ca)")
    return MqttSettings(
        host=args.mqtt_host,
        port=int(args.mqtt_port),
        username=args.mqtt_username or name,
        password=secret(args.mqtt_password, args.mqtt_password_file, "MQTT password"),
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

    return _daemon(run())


def _daemon(main: Coroutine[Any, Any, None]) -> int:
    """Run a daemon; a task it cannot live without stopping is logged and exits 1 (crash-only)."""
    try:
        asyncio.run(main)
    except AgentFailedError as failure:
        logging.getLogger("micropay").critical("stopping: %s", failure)
        return 1
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
    result: dict[str, Any] = {"account": args.name, "role": args.role}
    if args.token_file is None:
        result["token"] = answer["token"]
    else:
        write_private(args.token_file, answer["token"] + "\n")
        result["token_file"] = str(args.token_file)
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


def cmd_broker_sign_tail(args: argparse.Namespace) -> int:
    """Sign the head over events no signature covers, once an audit has vouched for them."""
    _prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    first, last = asyncio.run(sign_unsigned_tail(args.data_dir, args.through))
    _print({"signed_head": last, "events_now_covered": f"{first}..{last}"})
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
            "token_file": None,
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

    token = enrollment_token(args)

    async def run() -> None:
        info = read_public(args.broker_pub)
        agent = await VendorAgent.open(
            data_dir, args.name, info, terms, mqtt_settings(args, args.name)
        )
        agent.token = token
        await agent.run()

    return _daemon(run())


# --- buyer -------------------------------------------------------------------------------

BUYER_DEFAULTS: dict[str, Any] = {
    "data_dir": None,
    "name": None,
    "broker_pub": None,
    "timeout": 30.0,
    "token": None,
    "token_file": None,
}


def enrollment_token(args: argparse.Namespace) -> bytes | None:
    """The token from --token-file or MICROPAY_TOKEN (never from the command line)."""
    text = secret(args.token, args.token_file, "enrollment token")
    source = str(args.token_file) if args.token_file else "MICROPAY_TOKEN"
    return token_bytes(text, source)


async def _buyer(args: argparse.Namespace) -> BuyerAgent:
    require(args, "name", "broker_pub")
    data_dir = args.data_dir or Path(f"micropay-{args.name}")
    info = read_public(args.broker_pub)
    return await BuyerAgent.open(data_dir, args.name, info, mqtt_settings(args, args.name))


def cmd_buyer_enroll(args: argparse.Namespace) -> int:
    """Enroll with the operator's token and keep the certificate in the wallet."""
    _prepare(args, "buyer", BUYER_DEFAULTS)

    token = enrollment_token(args)
    if token is None:
        raise CommandError("give the enrollment token in --token-file FILE or MICROPAY_TOKEN")

    async def run() -> int:
        buyer = await _buyer(args)
        return await buyer.run(lambda: buyer.enroll(token), args.timeout)

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
    files = render(args.directory, args.port, args.host, tls=tls, retain_guard=args.retain_guard)
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
    chosen = args.password_file is not None
    password = (
        read_secret_file(args.password_file, "MQTT password") if chosen else generated_password()
    )
    add_user(MosquittoFiles(args.directory), args.name, password)
    result = {"username": args.name, "password": None if chosen else password}
    result["note"] = "reload Mosquitto (SIGHUP, or systemctl reload mosquitto) to use it"
    _print(result)
    return 0


def register(commands: argparse._SubParsersAction[Any]) -> None:  # noqa: PLR0915 - the command tree, read top to bottom
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
        type=bounded("witness_interval", float),
        metavar="SECONDS",
        help="publish the signed ledger head at most this often while it moves (default 30)",
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
        "--mosquitto-dir", type=Path, help="also create the MQTT user in this Mosquitto directory"
    )
    opened.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="write the one-time token to FILE (created 0600) instead of printing it",
    )
    opened.set_defaults(handler=cmd_broker_open_account)
    close = sub.add_parser("close-period", help="close a billing period (idempotent)")
    add_common(close, mqtt=False)
    close.add_argument("period", help="the period's name, e.g. 2026-11")
    close.add_argument(
        "--fee-bps", type=bounded("fee_bps"), default=0, help="broker fee in basis points"
    )
    close.set_defaults(handler=cmd_broker_close_period)
    revoke = sub.add_parser("revoke", help="revoke an account's certificate")
    add_common(revoke, mqtt=False)
    revoke.add_argument("name")
    revoke.add_argument("--reason", default="operator")
    revoke.set_defaults(handler=cmd_broker_revoke)
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
        "--redeem-interval", type=bounded("redeem_interval"), help="seconds between redemptions"
    )
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
            parser.add_argument("vendor", help="the vendor to pay")
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
                "--chain-length",
                type=bounded("chain_length"),
                default=100_000,
                help="paywords in a new chain",
            )
            parser.add_argument("--item-name", default="", help="what the payments are for")

    mqtt = commands.add_parser("mqtt", help="Mosquitto configuration and users")
    sub = mqtt.add_subparsers(dest="action", metavar="ACTION", required=True)
    rendered = sub.add_parser("render", help="write mosquitto.conf, ACL and password file")
    rendered.add_argument("directory", type=Path)
    rendered.add_argument("--port", type=bounded("port"), default=1883)
    rendered.add_argument("--host", default="127.0.0.1")
    rendered.add_argument("--certs", type=Path, metavar="DIR", help="enable TLS: `mqtt certs` dir")
    rendered.add_argument(
        "--tls-port", type=bounded("tls_port"), help="TLS listener port (default 8883)"
    )
    rendered.add_argument("--tls-host", help="TLS listener address (default: --host)")
    rendered.add_argument(
        "--no-retain-guard",
        dest="retain_guard",
        action="store_false",
        help="leave out the plugin that refuses retained messages outside the broadcast"
        " topics (needs gcc, mosquitto-dev, libmosquitto-dev to build)",
    )
    rendered.set_defaults(handler=cmd_mqtt_render)
    certs = sub.add_parser("certs", help="create a local CA and TLS certificates")
    certs.add_argument("directory", type=Path)
    certs.add_argument(
        "--host", action="append", help="a name or address in the server certificate (repeat)"
    )
    certs.add_argument("--client", action="append", help="also issue a client certificate")
    certs.add_argument(
        "--days", type=bounded("days"), default=DEFAULT_DAYS, help="validity (default 825)"
    )
    certs.add_argument(
        "--force", action="store_true", help="replace the CA (what it issued is no longer trusted)"
    )
    certs.set_defaults(handler=cmd_mqtt_certs)
    user = sub.add_parser("add-user", help="create or update an MQTT user")
    user.add_argument("directory", type=Path, help="a directory written by `mqtt render`")
    user.add_argument("name")
    user.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="a 0600 file holding the password to set (default: generated and printed)",
    )
    user.set_defaults(handler=cmd_mqtt_add_user)


USER_ERRORS = (
    CommandError,
    SettingsError,
    BrokerSetupError,
    KeyFileError,
    BuyerError,
    MosquittoError,
    PermissionsError,
    LedgerError,
    SecretInputError,
)
__all__ = ["MQTT_KEYS", "USER_ERRORS", "register"]
