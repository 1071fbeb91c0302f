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
from pathlib import Path
from typing import Any

MQTT_KEYS = ("mqtt_host", "mqtt_port", "mqtt_username", "mqtt_password", "mqtt_tls_ca")


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
        if value is None:
            value = default
        elif isinstance(default, bool) and isinstance(value, str):
            value = value.lower() in {"1", "true", "yes", "on"}
        elif isinstance(default, int) and not isinstance(default, bool):
            try:
                value = int(value)
            except (TypeError, ValueError) as exc:
                raise SettingsError(f"{name} must be an integer, not {value!r}") from exc
        elif isinstance(default, Path) or name.endswith(("_dir", "_pub", "_file")):
            value = Path(value)
        setattr(args, name, value)


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
