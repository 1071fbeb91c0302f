"""``micropay keys``: the README's token block as written, and the mistakes a user makes."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli.main import main
from agents.ops import softhsm
from agents.runtime.pkcs11_session import close_sessions

REPO = Path(__file__).resolve().parents[3]


def token_block() -> str:
    """The ``sh`` block of the README's "Keys in a token (PKCS#11)" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Keys in a token (PKCS#11)\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the section has no sh block"
    return found[1]


def test_the_readme_token_block_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROPAY_", "SOFTHSM2"))}
    env["HOME"] = str(tmp_path)
    env["VIRTUAL_ENV"] = ""
    done = subprocess.run(  # noqa: S603 - the README's own commands
        ["bash", "-c", "set -euo pipefail\n" + token_block()],  # noqa: S607 - the user's shell
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "result: BALANCED" in done.stdout
    shown = done.stdout
    descriptor = json.loads((tmp_path / "micropay-broker" / "broker.key").read_text())
    public = json.loads((tmp_path / "micropay-broker" / "broker.pub.json").read_text())
    rotated = json.loads((tmp_path / "micropay-broker" / "broker.key.1").read_text())
    assert descriptor["backend"] == rotated["backend"] == "pkcs11"
    assert "seed" not in json.dumps(descriptor) + json.dumps(rotated)
    assert f"sign_key     {descriptor['sign_key']}" in shown  # `keys show`: `broker init` took it
    assert rotated["key_label"] == "micropay-broker.2"  # the successor, in the same token
    assert public["sign_key"] == rotated["sign_key"] != descriptor["sign_key"]
    assert len(public["rotations"]) == 1  # the history agents follow the new key by
    assert "result: PASSED" in shown  # the audit across the rotation
    pin = tmp_path / "broker.pin"
    assert stat.S_IMODE(pin.stat().st_mode) == 0o600
    pin_text = pin.read_text().strip()
    assert pin_text not in done.stdout + done.stderr


def test_keys_init_says_what_is_missing_and_never_replaces_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "vendor"
    assert main(["keys", "init", "--role", "vendor", "--data-dir", str(directory)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["backend"] == "file"
    assert stat.S_IMODE((directory / "agent.key").stat().st_mode) == 0o600
    assert main(["keys", "init", "--role", "vendor", "--data-dir", str(directory)]) == 1
    assert "already exists; refusing to replace keys" in capsys.readouterr().err
    other = str(tmp_path / "other")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROPAY_PKCS11")}
    with pytest.MonkeyPatch.context() as patch:
        for name in set(os.environ) - set(env):
            patch.delenv(name)
        assert (
            main(["keys", "init", "--role", "buyer", "--data-dir", other, "--backend", "pkcs11"])
            == 1
        )
        assert "needs --pkcs11-module" in capsys.readouterr().err
        module = ["--pkcs11-module", "/nowhere/libtoken.so"]
        assert (
            main(
                [
                    "keys",
                    "init",
                    "--role",
                    "buyer",
                    "--data-dir",
                    other,
                    "--backend",
                    "pkcs11",
                    *module,
                ]
            )
            == 1
        )
        assert "needs --token-label" in capsys.readouterr().err
    assert main(["keys", "show", "--data-dir", str(tmp_path / "empty")]) == 1
    assert "holds no key file" in capsys.readouterr().err


def test_a_token_key_file_with_a_wrong_pin_stops_the_broker_in_one_line(tmp_path: Path) -> None:
    config = softhsm.write_config(tmp_path / "hsm")
    softhsm.init_token(config, "b", "officer-pin", "right-pin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROPAY_", "SOFTHSM2"))}
    env |= {softhsm.CONFIG_ENV: str(config), "MICROPAY_PKCS11_PIN": "right-pin"}
    micropay = [sys.executable, "-m", "agents.cli.main"]
    directory = str(tmp_path / "broker")
    module = str(softhsm.module_path())
    made = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            *(*micropay, "keys", "init", "--role", "broker", "--data-dir", directory),
            *("--backend", "pkcs11", "--pkcs11-module", module, "--token-label", "b"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    env["MICROPAY_PKCS11_PIN"] = "wrong-pin"
    refused = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*micropay, "broker", "init", "--data-dir", directory],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == "micropay: error: wrong PIN for token b"
    assert not (tmp_path / "broker" / "ledger.db").exists()
    close_sessions()


def test_softhsm_init_refuses_to_replace_a_pin_and_a_refused_pin_is_an_error(
    tmp_path: Path,
) -> None:
    pin = tmp_path / "t.pin"
    pin.write_text("kept\n")
    with pytest.raises(SystemExit):
        main(["keys", "softhsm-init"])
    assert (
        main(
            [
                "keys",
                "softhsm-init",
                "--dir",
                str(tmp_path / "hsm"),
                "--label",
                "t",
                "--pin-file",
                str(pin),
            ]
        )
        == 1
    )
    assert pin.read_text() == "kept\n"
    config = softhsm.write_config(tmp_path / "hsm2")
    with pytest.raises(softhsm.SoftHsmError, match="could not create token"):
        softhsm.init_token(config, "short", "1", "1")  # SoftHSM2 wants 4 to 255 characters


def test_keys_show_names_the_signing_key_in_force_after_a_broker_rotation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = str(tmp_path / "broker")
    assert main(["broker", "init", "--data-dir", directory]) == 0
    first = json.loads(capsys.readouterr().out)["sign_key"]
    assert main(["keys", "rotate", "broker", "--data-dir", directory]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert main(["keys", "show", "--data-dir", directory, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["sign_key"] == first  # broker.key: the agreement key stays with it
    assert shown["sign_key_in_force"] == rotated["sign_key"] != first
    assert shown["sign_key_file"].endswith("broker.key.1")
    assert shown["rotations"] == 1


def test_a_token_module_that_cannot_start_says_where_to_look(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROPAY_", "SOFTHSM2"))}
    env |= {softhsm.CONFIG_ENV: str(tmp_path / "missing.conf"), "MICROPAY_PKCS11_PIN": "1234"}
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            *(sys.executable, "-m", "agents.cli.main", "keys", "init", "--role", "buyer"),
            *("--data-dir", str(tmp_path / "alice"), "--backend", "pkcs11"),
            *("--pkcs11-module", str(softhsm.module_path()), "--token-label", "t"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "did not start (GeneralError)" in done.stderr
    assert "SOFTHSM2_CONF" in done.stderr
    assert not (tmp_path / "alice" / "agent.key").exists()
