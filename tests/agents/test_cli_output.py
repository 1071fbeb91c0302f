"""What an operator sees: --version, defaults in --help, log lines, quiet short commands.

Each runs ``micropay`` (or a small script) as its own process and reads what it printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from agents.runtime.mqtt_link import SESSION_EXPIRY
from tests.agents.conftest import Broker

REPO = Path(__file__).resolve().parents[2]
UTC_MILLIS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def run(
    *command: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MICROPAY_")}
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, *command],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def micropay(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run("-m", "agents.cli.main", *arguments, cwd=cwd)


def test_version(tmp_path: Path) -> None:
    done = micropay("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == f"micropay {version('micropay')}\n"


def test_help_shows_the_defaults(tmp_path: Path) -> None:
    pay = " ".join(micropay("buyer", "pay", "--help", cwd=tmp_path).stdout.split())
    for option, default in (
        ("--payments PAYMENTS how many payments", "1"),
        ("--chain-length CHAIN_LENGTH paywords in a new chain", "100000"),
        ("--timeout TIMEOUT seconds to wait for answers", "30"),  # from the settings
        ("--units UNITS units per payment (max with --mixed)", "1"),
        ("(0: write every payment)", "64"),  # --reserve-ahead, from the settings
    ):
        assert f"{option} (default: {default})" in pay, option
    vendor = " ".join(micropay("vendor", "run", "--help", cwd=tmp_path).stdout.split())
    assert "seconds between redemptions (default: 60)" in vendor
    assert "longest chain accepted (default: 1000000)" in vendor
    broker = " ".join(micropay("broker", "close-period", "--help", cwd=tmp_path).stdout.split())
    assert "where state is kept (default: micropay-broker)" in broker
    assert "broker fee in basis points (default: 0)" in broker


def test_json_logs_carry_a_millisecond_utc_time_and_structured_fields(tmp_path: Path) -> None:
    assert micropay("broker", "init", "--data-dir", "b", cwd=tmp_path).returncode == 0
    done = micropay(
        *("broker", "close-period", "2026-11", "--fee-bps", "100", "--data-dir", "b"),
        *("--log-level", "debug", "--log-json"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert entries
    for entry in entries:
        assert re.fullmatch(UTC_MILLIS, entry["time"]), entry
        assert {"level", "logger", "message"} <= entry.keys()
    closed = next(e for e in entries if e["message"].startswith("period closed"))
    assert closed["level"] == "info"
    assert (closed["period"], closed["fee_basis_points"], closed["debited"]) == ("2026-11", 100, 0)


def test_text_logs_use_the_same_time_and_short_commands_are_quiet(tmp_path: Path) -> None:
    assert micropay("broker", "init", "--data-dir", "b", cwd=tmp_path).returncode == 0
    quiet = micropay("broker", "close-period", "2026-10", "--data-dir", "b", cwd=tmp_path)
    assert quiet.returncode == 0
    assert quiet.stderr == ""
    verbose = micropay("broker", "close-period", "2026-11", "--data-dir", "b", "-v", cwd=tmp_path)
    assert re.fullmatch(
        UTC_MILLIS + r" INFO micropay\.broker: period closed: 2026-11 .*\n", verbose.stderr
    ), verbose.stderr


PUBLISH_BURST = """
import asyncio, sys
from agents.runtime.log_setup import setup_logging
from agents.runtime.mqtt import MqttSettings, open_link

setup_logging(sys.argv[1], as_json=False)

async def burst() -> None:
    settings = MqttSettings(port=int(sys.argv[2]), username="buyer1", password="pw-buyer1",
                            clean=True, client="aiomqtt")
    async with open_link(settings) as link:
        topic = "micropay/v1/in/vendor1/buyer1"
        await asyncio.gather(*(link.publish(topic, b"x") for _ in range(60)))

asyncio.run(burst())
"""


def test_the_mqtt_librarys_pending_publish_warning_is_only_debug(mosquitto: Broker) -> None:
    info = run("-c", PUBLISH_BURST, "info", str(mosquitto.port), cwd=REPO)
    assert info.returncode == 0, info.stderr
    assert info.stderr == ""
    debug = run("-c", PUBLISH_BURST, "debug", str(mosquitto.port), cwd=REPO)
    assert debug.returncode == 0, debug.stderr
    demoted = [line for line in debug.stderr.splitlines() if "pending publish calls" in line]
    assert demoted  # aiomqtt did complain: 60 publications waited at once
    assert all(re.match(UTC_MILLIS + " DEBUG mqtt: There are", line) for line in demoted)


def test_the_readme_and_mosquitto_conf_agree_on_how_long_a_backlog_is_kept() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    assert SESSION_EXPIRY == 86_400
    assert "QoS 1 backlog kept by Mosquitto for a day" in readme
    conf = (REPO / "mosquitto.conf").read_text()
    cap = re.search(r"^persistent_client_expiration (\d+)([hdwmy])$", conf, re.MULTILINE)
    assert cap is not None
    seconds = int(cap[1]) * {"h": 3600, "d": 86_400, "w": 7 * 86_400}[cap[2]]
    assert seconds >= SESSION_EXPIRY  # the cap does not cut the agents' day short
    assert f"persistent_client_expiration {cap[1]}{cap[2]}" in readme


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`micropay config check | head -1`: the pipe closes early; no traceback, exit 141."""
    reader, writer = os.pipe()
    os.close(reader)  # every write to the pipe now fails with EPIPE
    example = REPO / "contrib" / "micropay.toml.example"
    try:
        done = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-m", "agents.cli.main", "config", "check", str(example)],
            cwd=tmp_path,
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=60,
        )
    finally:
        os.close(writer)
    assert done.returncode == 141
    assert done.stderr == ""
