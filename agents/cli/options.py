"""What every agent sub-command shares: common options, MQTT settings, output, exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from agents.runtime.config_schema import default_log_level
from agents.runtime.gc_tuning import tune_for_daemon
from agents.runtime.log_setup import setup_logging
from agents.runtime.metrics_server import MetricsServer, start_metrics
from agents.runtime.mqtt import CLIENTS, MqttSettings
from agents.runtime.secret_input import secret
from agents.runtime.settings import Setting, bounded, resolve
from agents.runtime.supervision import AgentFailedError

log = logging.getLogger("micropay.settings")


class CommandError(Exception):
    """A command that cannot run as asked; its message is for the user."""


def add_common(parser: argparse.ArgumentParser, *, mqtt: bool = True) -> None:
    """Options every agent command takes."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="where state is kept")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info for the daemons, warning for other commands)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const="info",
        help="also log what the command does (--log-level info)",
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
        group.add_argument(
            "--mqtt-client",
            choices=CLIENTS,
            help="MQTT client: mqtt5 (in-house, acknowledges after commit; default) or aiomqtt",
        )


def add_metrics(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port`` and ``--metrics-host``: serve Prometheus metrics (off by default)."""
    group = parser.add_argument_group("metrics (env MICROPAY_METRICS_*)")
    group.add_argument(
        "--metrics-port",
        type=bounded("metrics_port"),
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)",
    )
    group.add_argument("--metrics-host", help="address to serve metrics on (default 127.0.0.1)")


def metrics_registry(args: argparse.Namespace) -> tuple[CollectorRegistry, MetricsServer | None]:
    """A daemon's own registry, served at once when a port is set (so a busy port fails early)."""
    registry = CollectorRegistry(auto_describe=False)
    port = getattr(args, "metrics_port", None)
    if port is None:
        return registry, None
    return registry, start_metrics(registry, args.metrics_host or "127.0.0.1", int(port))


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
        client=args.mqtt_client,
    )


def prepare(args: argparse.Namespace, group: str, defaults: dict[str, Any]) -> None:
    """Resolve options (flags, environment, file, defaults) and set up logging.

    A daemon (``run``) logs at INFO by default; a short command only warnings and errors,
    so that its output is its answer.
    """
    settled = resolve(args, group, defaults)
    if args.log_level is None:
        args.log_level = default_log_level(getattr(args, "action", None))
    setup_logging(args.log_level, bool(args.log_json))
    log_settings(group, settled)


def log_settings(group: str, settled: dict[str, Setting]) -> None:
    """Each option's value and origin at DEBUG (secrets only as set or unset)."""
    for name, setting in settled.items():
        log.debug("%s.%s = %s (%s)", group, name, setting.shown(name), setting.origin)


def print_json(data: object) -> None:
    """A command's result on stdout, as indented JSON."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def run_daemon(main: Coroutine[Any, Any, None]) -> int:
    """Run a daemon; a task it cannot live without stopping is logged and exits 1 (crash-only)."""
    tune_for_daemon()
    try:
        asyncio.run(main)
    except AgentFailedError as failure:
        logging.getLogger("micropay").critical("stopping: %s", failure)
        return 1
    return 0
