"""Which options a configuration file may set: its tables, their keys, types and defaults.

One table per command group (``[broker]``, ``[vendor]``, ``[buyer]``) plus ``[mqtt]``,
whose keys are the ``--mqtt-*`` options without the prefix. Listing them in one place
lets a typo (``prot``, ``[vendr]``) be refused instead of silently falling back to a
default, lets ``micropay config check`` show every value, and gives ``--help`` the
defaults the settings fall back to. Secrets are options too, but only from the
environment or a 0600 file: a key for them in the file is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True, slots=True)
class Kind:
    """A value's type as the file holds it (msgspec converts to it) and as a person reads it."""

    type: Any
    noun: str
    path: bool = False


TEXT: Final = Kind(str, "a string")
PATH: Final = Kind(str, "a path (a string)", path=True)
INTEGER: Final = Kind(int, "an integer")
NUMBER: Final = Kind(float, "a number")
SWITCH: Final = Kind(bool, "true or false")
LEVEL: Final = Kind(LogLevel, 'one of "debug", "info", "warning", "error"')
CLIENT: Final = Kind(Literal["mqtt5", "aiomqtt"], 'one of "mqtt5", "aiomqtt"')


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its kind, its default, and whether the file may hold it."""

    kind: Kind
    default: Any = None
    secret: bool = False


COMMON: Final = {
    "log_level": Option(LEVEL),  # None: INFO for the daemons, WARNING for short commands
    "log_json": Option(SWITCH, default=False),
}
METRICS: Final = {
    "metrics_port": Option(INTEGER),  # None: no metrics endpoint
    "metrics_host": Option(TEXT, "127.0.0.1"),
}
MQTT: Final = {
    "host": Option(TEXT, "127.0.0.1"),
    "port": Option(INTEGER, 1883),
    "username": Option(TEXT),
    "password": Option(TEXT, secret=True),
    "password_file": Option(PATH),
    "tls_ca": Option(PATH),
    "client": Option(CLIENT, "mqtt5"),
}
TABLES: Final[dict[str, dict[str, Option]]] = {
    "mqtt": MQTT,
    "broker": {
        "data_dir": Option(PATH, Path("micropay-broker")),
        "id": Option(TEXT, "broker"),
        "witness_interval": Option(NUMBER, 30.0),
        "allowance_vendors": Option(INTEGER, 4),
        "mosquitto_dir": Option(PATH),
        # scrip (docs/SCHEMES.md 3.13): BrokerPolicy's defaults
        "max_scrip_value": Option(INTEGER, 10_000),
        "scrip_lifetime": Option(NUMBER, 86_400.0),
        "scrip_deposit_grace": Option(NUMBER, 172_800.0),
        "scrip_properties": Option(TEXT, ""),  # comma-separated, e.g. "country=DE,adult=no"
        **METRICS,
        **COMMON,
    },
    "vendor": {
        "data_dir": Option(PATH),
        "name": Option(TEXT),
        "broker_pub": Option(PATH),
        "token": Option(TEXT, secret=True),
        "token_file": Option(PATH),
        "unit_value": Option(INTEGER, 1),
        "currency": Option(TEXT, "EUR"),
        "max_jump": Option(INTEGER, 1000),
        "max_length": Option(INTEGER, 1_000_000),
        "online": Option(SWITCH, default=False),
        "online_above": Option(INTEGER),  # None: as `online` says
        "allowance": Option(SWITCH, default=False),
        "scrip": Option(SWITCH, default=False),
        "scrip_online": Option(SWITCH, default=False),
        "redeem_interval": Option(INTEGER, 60),
        **METRICS,
        **COMMON,
    },
    "buyer": {
        "data_dir": Option(PATH),
        "name": Option(TEXT),
        "broker_pub": Option(PATH),
        "token": Option(TEXT, secret=True),
        "token_file": Option(PATH),
        "timeout": Option(NUMBER, 30.0),
        "reserve_ahead": Option(INTEGER, 64),  # `buyer pay`; the core's DEFAULT_RESERVE_AHEAD
        **METRICS,  # `buyer pay` only: the one command that runs long enough to scrape
        **COMMON,
    },
}
GROUPS: Final = ("broker", "vendor", "buyer")
COUNT: Final = 2**63 - 1  # the wire's largest amount
INDEX: Final = 2**32 - 1  # the wire's largest chain index
BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "mqtt_port": (1, 65_535),
    "metrics_port": (0, 65_535),
    "port": (1, 65_535),
    "tls_port": (1, 65_535),
    "credit_limit": (0, COUNT),
    "online_above": (0, COUNT),
    "allowance": (0, COUNT),
    "allowance_vendors": (1, 1_000),
    "fee_bps": (0, 10_000),
    "unit_value": (1, COUNT),
    "max_jump": (1, INDEX),
    "max_length": (1, INDEX),
    "redeem_interval": (1, 366 * 86_400),
    "witness_interval": (0.01, 86_400),
    "max_scrip_value": (1, COUNT),
    "scrip_lifetime": (1, 86_400),  # a scrip may not outlive its key period's next day
    "scrip_deposit_grace": (0, 366 * 86_400),
    "timeout": (0.1, 86_400),
    "payments": (1, 10**9),
    "units": (1, INDEX),
    "reserve_ahead": (0, 1_000_000),  # what a crash may cost; the broker's longest chain
    "chain_length": (1, INDEX),
    "price": (1, COUNT),
    "value": (1, COUNT),
    "mint_value": (1, COUNT),
    "days": (1, 36_500),
    "workers": (1, 64),
}
"""Every number an operator can give, bounded where it enters (flag, environment or file)."""
MQTT_PREFIX: Final = "mqtt_"


def option_name(table: str, key: str) -> str:
    """The option a file key sets: ``[mqtt] port`` is ``mqtt_port``, others keep their name."""
    return MQTT_PREFIX + key if table == "mqtt" else key


def lookup(group: str, name: str) -> tuple[str, str, Option] | None:
    """Where option ``name`` of a command in ``group`` lives in the file, if it may."""
    if name.startswith(MQTT_PREFIX) and name[len(MQTT_PREFIX) :] in MQTT:
        key = name[len(MQTT_PREFIX) :]
        return "mqtt", key, MQTT[key]
    option = TABLES.get(group, {}).get(name)
    return None if option is None else (group, name, option)


def defaults(group: str) -> dict[str, Any]:
    """Every option a command of ``group`` resolves, with the default it falls back to."""
    if group not in GROUPS:
        return {}
    found = {option_name("mqtt", key): option.default for key, option in MQTT.items()}
    found.update({key: option.default for key, option in TABLES.get(group, {}).items()})
    return found


def default_log_level(action: str | None) -> LogLevel:
    """The daemons (``run``) report their work at INFO; a short command only what went wrong."""
    return "info" if action == "run" else "warning"


def shown(bound: float) -> str:
    """A bound as a person reads it: whole numbers in full, with thousands separators."""
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


def out_of_bounds(name: str, value: object) -> str | None:
    """Why ``value`` does not fit option ``name`` (``None`` when it does, or is unbounded)."""
    if name not in BOUNDS or value is None or isinstance(value, bool):
        return None
    low, high = BOUNDS[name]
    if isinstance(value, int | float) and low <= value <= high:
        return None
    return f"must be between {shown(low)} and {shown(high)}, not {value!r}"
