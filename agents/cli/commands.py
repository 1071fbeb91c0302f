"""The agent sub-commands (broker, vendor, buyer, mqtt, config, keys) and their errors."""

from __future__ import annotations

import argparse
from typing import Any

from agents.cli.broker_commands import register_broker
from agents.cli.config_commands import register_config
from agents.cli.keys_commands import register_keys
from agents.cli.mqtt_commands import register_mqtt
from agents.cli.options import CommandError
from agents.cli.party_commands import register_buyer, register_vendor
from agents.daemons.broker_files import BrokerSetupError
from agents.daemons.buyer_agent import BuyerError
from agents.ops.mosquitto import MosquittoError
from agents.runtime.datadir_lock import DataDirBusyError
from agents.runtime.keystore import KeyFileError
from agents.runtime.metrics_server import MetricsPortError
from agents.runtime.private_files import PermissionsError
from agents.runtime.secret_input import SecretInputError
from agents.runtime.settings import MQTT_KEYS, SettingsError
from broker_ledger.store import LedgerError


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the agent command groups to the top-level parser."""
    register_broker(commands)
    register_vendor(commands)
    register_buyer(commands)
    register_mqtt(commands)
    register_config(commands)
    register_keys(commands)


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
    DataDirBusyError,
    MetricsPortError,
)
__all__ = ["MQTT_KEYS", "USER_ERRORS", "register"]
