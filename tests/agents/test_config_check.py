"""The configuration file is checked: a typo or a wrong type is one line, exit 2; never ignored.

Every case runs ``micropay`` as its own process, as an operator would, with a clean
environment (no ``MICROPAY_*`` variable but those a case sets).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents.runtime import config_schema
from agents.runtime.settings import Setting

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "contrib" / "micropay.toml.example"


def micropay(
    *arguments: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MICROPAY_")}
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "agents.cli.main", *arguments],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_example_configuration_is_valid_and_every_origin_is_shown(tmp_path: Path) -> None:
    done = micropay("config", "check", str(EXAMPLE), cwd=tmp_path, env={"MICROPAY_UNIT_VALUE": "3"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == f"{EXAMPLE}: valid"
    settings = {
        (table, match["key"]): (match["value"], match["origin"]) for table, match in _rows(lines)
    }
    assert settings["mqtt", "port"] == ("1883", f"{EXAMPLE}:6 (mqtt.port)")
    assert settings["broker", "data_dir"] == (
        '"/var/lib/micropay/broker"',
        f"{EXAMPLE}:14 (broker.data_dir)",
    )
    assert settings["vendor", "unit_value"] == ("3", "environment variable MICROPAY_UNIT_VALUE")
    assert settings["vendor", "max_length"] == ("1000000", "default")
    assert settings["buyer", "timeout"] == ("30.0", f"{EXAMPLE}:25 (buyer.timeout)")
    assert settings["mqtt", "password"] == ("(unset)", "default")
    # Every line the origins point at holds the key they name.
    text = EXAMPLE.read_text().splitlines()
    for (_, key), (_, origin) in settings.items():
        if origin.startswith(str(EXAMPLE)):
            number = int(origin.split(":")[1].split(" ")[0])
            assert text[number - 1].startswith(f"{key} ="), (key, origin)


def _rows(lines: list[str]) -> list[tuple[str, re.Match[str]]]:
    rows, table = [], ""
    for line in lines[1:]:
        if line.startswith("["):
            table = line.strip("[]")
        elif match := re.fullmatch(r"(?P<key>\w+) += (?P<value>.+?) +# (?P<origin>.+)", line):
            rows.append((table, match))
    return rows


@pytest.mark.parametrize(
    ("content", "line", "expected"),
    [
        ("[broker]\nprot = 18830\n", 2, "unknown key broker.prot (did you mean port, in [mqtt]?)"),
        ("[mqtt]\nhost = 'h'\n\n[vendr]\nname = 'x'\n", 4, "unknown table [vendr]"),
        ("[broker]\ndata_dir = 5\n", 2, "broker.data_dir must be a path (a string), not 5"),
        ("[vendor]\nonline = 'yes'\n", 2, "vendor.online must be true or false, not 'yes'"),
        ("[mqtt]\nport = 70000\n", 2, "mqtt.port must be between 1 and 65,535, not 70000"),
        ("[vendor]\nonline_above = -5\n", 2, "vendor.online_above must be between 0 and"),
        ("[mqtt]\n# the secret\npassword = 'x'\n", 3, "mqtt.password does not belong"),
        ("[buyer\n", 1, "not valid TOML"),
    ],
)
def test_an_invalid_file_is_one_line_naming_file_line_and_key_exit_2(
    tmp_path: Path, content: str, line: int, expected: str
) -> None:
    config = tmp_path / "micropay.toml"
    config.write_text(content)
    for command in (
        ["config", "check", str(config)],
        ["broker", "status", "--config", str(config), "--data-dir", str(tmp_path / "b")],
        ["buyer", "balance", "--name", "alice"],  # the file from MICROPAY_CONFIG
    ):
        done = micropay(*command, cwd=tmp_path, env={"MICROPAY_CONFIG": str(config)})
        assert done.returncode == 2, (command, done.stderr)
        assert done.stdout == ""
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"micropay: error: {config}:{line}: "), done.stderr
        assert expected in done.stderr


def test_the_readme_shows_the_error_a_typo_really_gives(tmp_path: Path) -> None:
    (tmp_path / "micropay.toml").write_text("[broker]\nprot = 18830\n")
    done = micropay("config", "check", "micropay.toml", cwd=tmp_path)
    assert done.returncode == 2
    assert f"`{done.stderr.strip()}`" in " ".join((REPO / "README.md").read_text().split())


def test_bad_variables_exit_2_and_a_missing_file_exits_1(tmp_path: Path) -> None:
    done = micropay("config", "check", cwd=tmp_path, env={"MICROPAY_MQTT_PORT": "0"})
    assert done.returncode == 2
    assert done.stderr == (
        "micropay: error: MICROPAY_MQTT_PORT must be between 1 and 65,535, not 0\n"
    )
    done = micropay(
        "broker", "status", "--data-dir", "b", cwd=tmp_path, env={"MICROPAY_LOG_JSON": "maybe"}
    )
    assert done.returncode == 2
    assert "MICROPAY_LOG_JSON must be true or false" in done.stderr
    done = micropay("config", "check", "nowhere.toml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == "micropay: error: no configuration file at nowhere.toml\n"
    done = micropay("config", "check", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("no configuration file")


def test_a_command_logs_where_each_of_its_settings_came_from(tmp_path: Path) -> None:
    config = tmp_path / "micropay.toml"
    config.write_text('[broker]\nid = "central"\n')
    assert micropay("broker", "init", "--data-dir", "b", cwd=tmp_path).returncode == 0
    done = micropay(
        *("broker", "status", "--config", str(config), "--data-dir", "b"),
        "--log-level",
        "debug",
        cwd=tmp_path,
        env={"MICROPAY_MQTT_HOST": "mq.example.org", "MICROPAY_MQTT_PASSWORD": "hunter2"},
    )
    assert done.returncode == 0, done.stderr
    assert 'broker.data_dir = "b" (flag --data-dir)' in done.stderr
    assert 'broker.mqtt_host = "mq.example.org" (environment variable MICROPAY_MQTT_HOST)' in (
        done.stderr
    )
    assert f'broker.id = "central" ({config}:2 (broker.id))' in done.stderr
    assert "broker.witness_interval = 30.0 (default)" in done.stderr
    assert "broker.mqtt_password = (set) (environment variable" in done.stderr
    assert "hunter2" not in done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["vendor", "run", "--config", "none.toml"],
        ["buyer", "balance"],
        ["broker", "status", "--data-dir", "nowhere"],
    ],
)
def test_commands_fall_back_to_the_defaults_config_check_and_help_show(
    tmp_path: Path, command: list[str]
) -> None:
    """What a command really falls back to is what the schema (and so --help) says."""
    if "--config" in command:
        (tmp_path / "none.toml").write_text("")
    done = micropay(*command, "--log-level", "debug", cwd=tmp_path)
    group = command[0]
    fallen = re.findall(
        rf"DEBUG micropay\.settings: {group}\.(\w+) = (.+) \(default\)", done.stderr
    )
    assert fallen, done.stderr
    for name, shown in fallen:
        expected = Setting(config_schema.defaults(group)[name], "default", secret=False)
        if name != "log_level":  # resolved per command after the settings (debug here)
            assert shown == expected.shown(name), name
