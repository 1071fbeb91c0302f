"""Options resolve as documented: flag, then MICROPAY_* environment, then the TOML file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from agents.cli.main import main
from agents.runtime.settings import SettingsError, require, resolve

DEFAULTS = {"mqtt_port": 1883, "unit_value": 1, "data_dir": None, "online": False}


def namespace(**given: object) -> argparse.Namespace:
    values = dict.fromkeys(DEFAULTS)
    values.update(given)
    return argparse.Namespace(**values)


def test_flag_beats_environment_beats_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "micropay.toml"
    config.write_text(
        '[mqtt]\nport = 1999\n[vendor]\nunit_value = 7\ndata_dir = "/srv/v"\nonline = true\n'
    )
    monkeypatch.setenv("MICROPAY_CONFIG", str(config))
    args = namespace()
    resolve(args, "vendor", DEFAULTS)
    assert (args.mqtt_port, args.unit_value, args.data_dir, args.online) == (
        1999,
        7,
        Path("/srv/v"),
        True,
    )
    monkeypatch.setenv("MICROPAY_UNIT_VALUE", "9")
    monkeypatch.setenv("MICROPAY_ONLINE", "false")
    args = namespace(mqtt_port=2000)
    resolve(args, "vendor", DEFAULTS)
    assert (args.mqtt_port, args.unit_value, args.online) == (2000, 9, False)


def test_bad_values_and_missing_options_are_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICROPAY_UNIT_VALUE", "lots")
    with pytest.raises(SettingsError, match="MICROPAY_UNIT_VALUE must be an integer"):
        resolve(namespace(), "vendor", DEFAULTS)
    monkeypatch.setenv("MICROPAY_UNIT_VALUE", "1")
    monkeypatch.setenv("MICROPAY_MQTT_CLIENT", "paho")
    with pytest.raises(SettingsError, match='MQTT_CLIENT must be one of "mqtt5", "aiomqtt"'):
        resolve(namespace(), "vendor", DEFAULTS)
    monkeypatch.delenv("MICROPAY_MQTT_CLIENT")
    with pytest.raises(SettingsError, match="--broker-pub"):
        require(argparse.Namespace(broker_pub=None), "broker_pub")
    broken = tmp_path / "broken.toml"
    broken.write_text("[vendor\n")
    monkeypatch.delenv("MICROPAY_UNIT_VALUE")
    monkeypatch.setenv("MICROPAY_CONFIG", str(broken))
    with pytest.raises(SettingsError, match="not valid TOML"):
        resolve(namespace(), "vendor", DEFAULTS)


def test_commands_report_user_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["buyer", "balance", "--name", "alice"]) == 1
    assert "missing --broker-pub" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    assert main(["broker", "status", "--data-dir", str(missing)]) == 1
    assert "has no broker keys" in capsys.readouterr().err
    assert main(["broker", "init", "--data-dir", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["broker", "init", "--data-dir", str(tmp_path / "b")]) == 1
    assert "already holds a broker; refusing to start over" in capsys.readouterr().err
    assert (
        main(
            [
                "broker",
                "open-account",
                "bad/name",
                "--role",
                "buyer",
                "--data-dir",
                str(tmp_path / "b"),
            ]
        )
        == 1
    )
    assert "account names" in capsys.readouterr().err


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (
        [],
        ["audit"],
        ["demo"],
        ["broker"],
        ["broker", "run"],
        ["broker", "open-account"],
        ["vendor", "run"],
        ["buyer", "pay"],
        ["mqtt", "render"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: micropay" in capsys.readouterr().out
