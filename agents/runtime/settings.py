"""Where option values come from: the command line, then the environment, then a TOML file.

``MICROPAY_<OPTION>`` (``MICROPAY_MQTT_PORT``, ``MICROPAY_DATA_DIR`` ...) overrides the
file; a flag overrides both. The TOML file has one table per command group plus
``[mqtt]``, with option names as keys (``data_dir``, ``unit_value`` ...); its schema is
``config_schema``. Each value keeps where it came from, so that an operator can ask.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin

from agents.runtime import config_schema
from agents.runtime.config_file import ConfigError, ConfigFile, SettingsError, load_config
from agents.runtime.config_schema import (
    BOUNDS,
    INTEGER,
    NUMBER,
    PATH,
    SWITCH,
    TEXT,
    Kind,
    default_log_level,
)

MQTT_KEYS: Final = tuple(config_schema.option_name("mqtt", key) for key in config_schema.MQTT)
TRUE: Final = frozenset({"1", "true", "yes", "on"})
FALSE: Final = frozenset({"0", "false", "no", "off", ""})

__all__ = ["BOUNDS", "MQTT_KEYS", "ConfigError", "Setting", "SettingsError", "resolve"]


@dataclass(frozen=True, slots=True)
class Setting:
    """An option's value and where it came from (a flag, a variable, a file line, a default)."""

    value: Any
    origin: str
    secret: bool = False

    def shown(self, name: str) -> str:
        """The value as it would be written in the file (secrets only as set or unset)."""
        value = self.value
        if self.secret:
            return "(set)" if value else "(unset)"
        if value is None and name == "log_level":
            return f"({default_log_level('run')} for run, {default_log_level(None)} otherwise)"
        if value is None:
            return "(unset)"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | Path):
            return json.dumps(str(value))
        return str(value)


def config_path(given: Path | None) -> Path | None:
    """The file named by ``--config``, else by ``MICROPAY_CONFIG``; ``None`` without either."""
    named = given or os.environ.get("MICROPAY_CONFIG")
    return Path(named) if named else None


def settle(
    group: str,
    defaults: Mapping[str, Any],
    given: Mapping[str, Any],
    config: ConfigFile | None,
    environ: Mapping[str, str],
) -> dict[str, Setting]:
    """Every option of ``defaults``: from ``given`` (flags), ``environ``, ``config``, default."""
    settled = {}
    for name, default in defaults.items():
        place = config_schema.lookup(group, name)
        secret = place is not None and place[2].secret
        env = f"MICROPAY_{name.upper()}"
        if given.get(name) is not None:
            settled[name] = Setting(given[name], "flag --" + name.replace("_", "-"), secret)
        elif env in environ:
            value = from_environment(env, environ[env], _kind(group, name, default))
            settled[name] = Setting(value, f"environment variable {env}", secret)
        elif config is not None and place is not None and place[:2] in config.values:
            found = config.values[place[0], place[1]]
            settled[name] = Setting(found.value, found.where, secret)
        else:
            settled[name] = Setting(default, "default", secret)
    return settled


def resolve(
    args: argparse.Namespace, group: str, defaults: dict[str, Any] | None = None
) -> dict[str, Setting]:
    """Fill every option left unset on the command line from env, file, then its default.

    The options are the group's schema plus ``defaults`` (whose values win); returns
    where each came from.
    """
    options = {**config_schema.defaults(group), **(defaults or {})}
    config = load_config(config_path(getattr(args, "config", None)))
    given = {name: getattr(args, name, None) for name in options}
    settled = settle(group, options, given, config, os.environ)
    for name, setting in settled.items():
        setattr(args, name, setting.value)
    return settled


def _kind(group: str, name: str, default: object) -> Kind:
    place = config_schema.lookup(group, name)
    if place is not None:
        return place[2].kind
    if isinstance(default, bool):
        return SWITCH
    if isinstance(default, int | float):
        return INTEGER if isinstance(default, int) else NUMBER
    if isinstance(default, Path) or name.endswith(("_dir", "_pub", "_file")):
        return PATH
    return TEXT


def from_environment(env: str, text: str, kind: Kind) -> object:
    """A variable's text as its option's kind, within the option's bounds."""
    value: object = text
    if kind is SWITCH:
        if text.lower() not in TRUE | FALSE:
            raise ConfigError(f"{env} must be true or false (1/0, yes/no, on/off), not {text!r}")
        value = text.lower() in TRUE
    elif kind is INTEGER or kind is NUMBER:
        try:
            value = int(text) if kind is INTEGER else float(text)
        except ValueError as exc:
            raise ConfigError(f"{env} must be {kind.noun}, not {text!r}") from exc
    elif get_origin(kind.type) is Literal:  # a choice: a log level, an MQTT client
        value = text.lower()
        if value not in get_args(kind.type):
            raise ConfigError(f"{env} must be {kind.noun}, not {text!r}")
    elif kind.path:
        value = Path(text)
    problem = config_schema.out_of_bounds(env.removeprefix("MICROPAY_").lower(), value)
    if problem is not None:
        raise ConfigError(f"{env} {problem}")
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
            shown = config_schema.shown
            raise argparse.ArgumentTypeError(f"must be between {shown(low)} and {shown(high)}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def require(args: argparse.Namespace, *names: str) -> None:
    """Fail clearly when a needed option has no value from any source."""
    missing = [n for n in names if getattr(args, n, None) in (None, "")]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in missing)
        envs = ", ".join("MICROPAY_" + n.upper() for n in missing)
        raise SettingsError(f"missing {flags} (or {envs}, or the config file)")
