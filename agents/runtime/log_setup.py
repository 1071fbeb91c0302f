"""How the daemons and commands log: one line per record, UTC timestamps with milliseconds.

Text for a person, or one JSON object per line for a log shipper (``--log-json``) with
the record's ``extra`` fields as fields of their own. The MQTT library's routine chatter
is kept out of the operator's way: aiomqtt warns whenever more than ten QoS 1
publications wait for their acknowledgement, which a busy vendor does all the time, so
that warning is demoted to DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Final

MQTT_LOGGER: Final = "mqtt"  # aiomqtt's (and, through it, paho's) logger
_RECORD_FIELDS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


def utc_timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. ``2026-12-01T00:36:44.123Z``."""
    stamp = datetime.fromtimestamp(created, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: MESSAGE``, the time in UTC."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        """The record's time as ``utc_timestamp`` writes it."""
        del datefmt
        return utc_timestamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per log line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON: time, level, logger, message, then its ``extra`` fields."""
        entry: dict[str, object] = {
            "time": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class DemoteRoutine(logging.Filter):
    """aiomqtt's "There are N pending publish calls." is routine under load: DEBUG, not WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote that one message; shown only when the root logger shows DEBUG."""
        if isinstance(record.msg, str) and record.msg.endswith("pending publish calls."):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


_DEMOTE: Final = DemoteRoutine()


def setup_logging(level: str, as_json: bool) -> None:
    """Configure the root logger for a daemon or a command."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    mqtt = logging.getLogger(MQTT_LOGGER)
    mqtt.setLevel(max(logging.WARNING, logging.getLogger().level))
    if _DEMOTE not in mqtt.filters:
        mqtt.addFilter(_DEMOTE)
