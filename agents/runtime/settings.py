"""Where option values come from: the command line, then the environment, then a TOML file.

``MICROPAY_<OPTION>`` (``MICROPAY_MQTT_PORT``, ``MICROPAY_DATA_DIR`` ...) overrides the
file; a flag overrides both. The TOML file has one table per command group plus
``[mqtt]``, with option names as keys (``data_dir``, ``unit_value`` ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

MQTT_KEYS = (
    "mqtt_host",
    "mqtt_port",
    "mqtt_username",
    "mqtt_password",
    "mqtt_password_file",
    "mqtt_tls_ca",
)
COUNT: Final = 2**63 - 1  # the wire's largest amount
INDEX: Final = 2**32 - 1  # the wire's largest chain index
BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "mqtt_port": (1, 65_535),
    "port": (1, 65_535),
    "tls_port": (1, 65_535),
    "credit_limit": (0, COUNT),
    "fee_bps": (0, 10_000),
    "unit_value": (1, COUNT),
    "max_jump": (1, INDEX),
    "max_length": (1, INDEX),
    "redeem_interval": (1, 366 * 86_400),
    "witness_interval": (0.01, 86_400),
    "timeout": (0.1, 86_400),
    "payments": (1, 10**9),
    "units": (1, INDEX),
    "chain_length": (1, INDEX),
    "days": (1, 36_500),
    "workers": (1, 64),
}
"""Every number an operator can give, bounded where it enters (flag, environment or file)."""


class SettingsError(Exception):
    """A configuration file that cannot be read, or a required value that is missing."""


def load_file(path: Path | None) -> dict[str, Any]:
    """The parsed TOML file (empty without one)."""
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(f"no configuration file at {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from exc


def resolve(args: argparse.Namespace, group: str, defaults: dict[str, Any]) -> None:
    """Fill every option left unset on the command line from env, file, then ``defaults``."""
    config_path = getattr(args, "config", None) or os.environ.get("MICROPAY_CONFIG")
    document = load_file(Path(config_path) if config_path else None)
    section = document.get(group, {})
    mqtt = {f"mqtt_{key}": value for key, value in document.get("mqtt", {}).items()}
    for name, default in defaults.items():
        if getattr(args, name, None) is not None:
            continue
        value: Any = os.environ.get(f"MICROPAY_{name.upper()}")
        if value is None:
            value = section.get(name, mqtt.get(name))
        setattr(args, name, default if value is None else _typed(name, value, default))
    check_bounds(args)


def _typed(name: str, value: Any, default: Any) -> Any:  # noqa: ANN401 - TOML or env value
    """A value from the environment or the file, converted like its default."""
    if isinstance(default, bool):
        return value.lower() in {"1", "true", "yes", "on"} if isinstance(value, str) else value
    if isinstance(default, int | float):
        kind = type(default)
        try:
            return kind(value)
        except (TypeError, ValueError) as exc:
            noun = "an integer" if kind is int else "a number"
            raise SettingsError(f"{name} must be {noun}, not {value!r}") from exc
    if isinstance(default, Path) or name.endswith(("_dir", "_pub", "_file")):
        return Path(value)
    return value


def bounded(name: str, kind: type[int | float] = int) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` within ``BOUNDS[name]``, or a usage error."""
    low, high = BOUNDS[name]

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, not {text!r}") from exc
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {_shown(low)} and {_shown(high)}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _shown(bound: float) -> str:
    """A bound as a person reads it: whole numbers in full, with thousands separators."""
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


def check_bounds(args: argparse.Namespace) -> None:
    """Refuse a bounded option that came from the environment or the file out of range."""
    for name, (low, high) in BOUNDS.items():
        value = getattr(args, name, None)
        if value is None or isinstance(value, bool):
            continue
        if not isinstance(value, int | float) or not low <= value <= high:
            flag = "--" + name.replace("_", "-")
            raise SettingsError(
                f"{flag} must be between {_shown(low)} and {_shown(high)}, not {value!r}"
            )


def require(args: argparse.Namespace, *names: str) -> None:
    """Fail clearly when a needed option has no value from any source."""
    missing = [n for n in names if getattr(args, n, None) in (None, "")]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in missing)
        envs = ", ".join("MICROPAY_" + n.upper() for n in missing)
        raise SettingsError(f"missing {flags} (or {envs}, or the config file)")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON."""
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, as_json: bool) -> None:
    """Configure the root logger for a daemon or a command."""
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiomqtt").setLevel(max(logging.WARNING, logging.getLogger().level))
