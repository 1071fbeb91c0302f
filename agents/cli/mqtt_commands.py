"""``micropay mqtt``: Mosquitto's configuration, TLS certificates and users."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agents.cli.options import CommandError, print_json
from agents.ops.mosquitto import (
    MosquittoFiles,
    TlsListener,
    add_user,
    generated_password,
    render,
)
from agents.ops.tls_certs import DEFAULT_DAYS, CertError, make_certs
from agents.runtime.private_files import write_private
from agents.runtime.secret_input import read_secret_file
from agents.runtime.settings import bounded


def cmd_mqtt_render(args: argparse.Namespace) -> int:
    """Write the project's Mosquitto configuration, ACL and password file into a directory."""
    tls = None
    if args.certs is not None:
        tls = TlsListener(args.tls_port or 8883, args.certs, args.tls_host)
    elif args.tls_port is not None or args.tls_host is not None:
        raise CommandError("--tls-port and --tls-host need --certs DIR")
    files = render(args.directory, args.port, args.host, tls=tls, retain_guard=args.retain_guard)
    print_json(
        {"config": str(files.config), "acl": str(files.acl), "passwords": str(files.passwords)}
    )
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
    print_json({"written": [str(p) for p in report.written], "kept": [str(p) for p in report.kept]})
    return 0


def cmd_mqtt_add_user(args: argparse.Namespace) -> int:
    """Create or update an MQTT user (the ACL confines it by its name)."""
    if args.password_file is not None and args.new_password_file is not None:
        raise CommandError("give --password-file (set it) or --new-password-file (save it)")
    chosen = args.password_file is not None
    password = (
        read_secret_file(args.password_file, "MQTT password") if chosen else generated_password()
    )
    if args.new_password_file is not None:
        try:
            write_private(args.new_password_file, password + "\n")
        except OSError as exc:
            raise CommandError(f"cannot write {args.new_password_file}: {exc.strerror}") from exc
    add_user(MosquittoFiles(args.directory), args.name, password)
    shown = None if chosen or args.new_password_file is not None else password
    result: dict[str, Any] = {"username": args.name, "password": shown}
    if args.new_password_file is not None:
        result["password_file"] = str(args.new_password_file)
    result["note"] = "reload Mosquitto (SIGHUP, or systemctl reload mosquitto) to use it"
    print_json(result)
    return 0


def register_mqtt(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``micropay mqtt`` and its actions (render, certs, add-user)."""
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
    user.add_argument(
        "--new-password-file",
        type=Path,
        metavar="FILE",
        help="generate the password and write it to FILE (created 0600) instead of printing it;"
        " give FILE to the agent as --mqtt-password-file",
    )
    user.set_defaults(handler=cmd_mqtt_add_user)
