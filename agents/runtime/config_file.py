"""Reading the TOML configuration file, checked against the schema before any value is used.

The whole file is checked, whichever command reads it: an unknown table or key, a secret
that does not belong in it, a value of the wrong type or out of bounds is refused with
the file, the line and the key. Every value keeps where it came from, for
``micropay config check`` and the daemons' debug log.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from agents.runtime.config_schema import TABLES, Option, option_name, out_of_bounds


class SettingsError(Exception):
    """A configuration file that cannot be read, or a required value that is missing."""


class ConfigError(SettingsError):
    """A configuration file or variable that is invalid: a usage error (exit 2)."""


@dataclass(frozen=True, slots=True)
class FileValue:
    """A value read from the file, converted to its option's type, and where it was written."""

    value: Any
    where: str


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A checked configuration file: ``(table, key)`` to its value."""

    path: Path
    values: dict[tuple[str, str], FileValue]


def load_config(path: Path | None) -> ConfigFile | None:
    """The checked file (``None`` without one); ``ConfigError`` names what is wrong."""
    if path is None:
        return None
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise SettingsError(f"no configuration file at {path}") from exc
    except OSError as exc:
        raise SettingsError(f"cannot read the configuration file {path}: {exc.strerror}") from exc
    try:
        text = raw.decode()
        document = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_PLACE.search(str(exc))
        where = str(path) if found is None else f"{path}:{found[1]}"
        why = _TOML_PLACE.sub("", str(exc)).strip()
        raise ConfigError(f"{where}: not valid TOML: {why}") from exc
    return ConfigFile(path, _checked(path, text, document))


def _checked(path: Path, text: str, document: dict[str, Any]) -> dict[tuple[str, str], FileValue]:
    values = {}
    for table, body in document.items():
        if table not in TABLES:
            where = _where(path, text, table, None)
            raise ConfigError(f"{where}: unknown table [{table}]{_hint_table(table)}")
        if not isinstance(body, dict):
            where = _where(path, text, table, None)
            raise ConfigError(f"{where}: {table} must be a table ([{table}]), not {body!r:.40}")
        for key, value in body.items():
            where = _where(path, text, table, key)
            option = TABLES[table].get(key)
            if option is None:
                raise ConfigError(f"{where}: unknown key {table}.{key}{_hint_key(table, key)}")
            converted = _converted(table, key, option, value, where)
            values[table, key] = FileValue(converted, f"{where} ({table}.{key})")
    return values


def _converted(table: str, key: str, option: Option, value: object, where: str) -> object:
    if option.secret:
        env = "MICROPAY_" + option_name(table, key).upper()
        raise ConfigError(
            f"{where}: {table}.{key} does not belong in a configuration file: use"
            f" {key}_file (a 0600 file) or {env}"
        )
    try:
        converted: object = msgspec.convert(value, option.kind.type, strict=True)
    except msgspec.ValidationError as exc:
        shown = f"{value!r:.60}"
        raise ConfigError(
            f"{where}: {table}.{key} must be {option.kind.noun}, not {shown}"
        ) from exc
    problem = out_of_bounds(option_name(table, key), converted)
    if problem is not None:
        raise ConfigError(f"{where}: {table}.{key} {problem}")
    return Path(str(converted)) if option.kind.path else converted


def _hint_table(table: str) -> str:
    close = difflib.get_close_matches(table, TABLES, n=1)
    if close:
        return f" (did you mean [{close[0]}]?)"
    return "; the tables are " + ", ".join(f"[{name}]" for name in TABLES)


def _hint_key(table: str, key: str) -> str:
    close = difflib.get_close_matches(key, TABLES[table], n=1)
    if close:
        return f" (did you mean {table}.{close[0]}?)"
    for other, options in TABLES.items():
        close = difflib.get_close_matches(key.removeprefix("mqtt_"), options, n=1)
        if other != table and close:
            if close[0] == key.removeprefix("mqtt_"):
                return f" ({close[0]} belongs in [{other}])"
            return f" (did you mean {close[0]}, in [{other}]?)"
    known = sorted(name for name, option in TABLES[table].items() if not option.secret)
    return f"; [{table}] takes " + ", ".join(known)


_TOML_PLACE = re.compile(r"\(at line (\d+), column \d+\)")
_HEADER = re.compile(r"\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _where(path: Path, text: str, table: str, key: str | None) -> str:
    """``FILE:LINE`` of a table's header or of a key in it (just ``FILE`` if not found)."""
    line = _line_of(text, table, key)
    return f"{path}:{line}" if line else str(path)


def _line_of(text: str, table: str, key: str | None) -> int | None:
    current: str | None = None
    top_level = re.compile(rf"""["']?{re.escape(table)}["']?\s*[.=]""")  # dotted or inline
    assigned = re.compile(rf"""(?<![\w-])["']?{re.escape(key or "")}["']?\s*=""")
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = _HEADER.match(stripped)
        if header is not None:
            current = header.group(1).strip("\"' ")
            if key is None and current == table:
                return number
            continue
        if current is None and top_level.match(stripped):
            if key is None or assigned.search(stripped.split(".", 1)[-1]):
                return number
        elif key is not None and current == table and assigned.match(stripped):
            return number
    return None
