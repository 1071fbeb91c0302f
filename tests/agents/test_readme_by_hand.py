"""The README's "Running it by hand" block, run as written, so it cannot rot.

The block is taken from README.md and run by bash in the clone, as a user pasting it would,
with one change: the port 18830 becomes a free one, so the block's Mosquitto is private to
this test. ``HOME`` is a temporary directory, so everything the block writes lands there.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from agents.ops.mosquitto import free_port

REPO = Path(__file__).resolve().parents[2]
README_PORT = "18830"


def by_hand_block(heading: str = "Running it by hand") -> str:
    """The first ``sh`` block of a README section (by default "Running it by hand")."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the section has no sh block"
    return found[1]


def run_block(block: str, port: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run a README block with bash in the clone, its Mosquitto on a free port."""
    script = "\n".join(
        [
            "set -euo pipefail",
            # Whatever the block leaves running (on failure) is stopped with the script.
            "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
            block.replace(port, str(free_port())),
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROPAY_", "VIRTUAL_ENV"))}
    env["HOME"] = str(home)
    return subprocess.run(  # noqa: S603 - the README's own commands
        ["bash", "-c", script],  # noqa: S607 - bash from PATH, as the user's shell
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_block_names_what_a_fresh_machine_needs() -> None:
    block = by_hand_block()
    assert ". .venv/bin/activate" in block  # `micropay` on PATH
    assert f"MICROPAY_MQTT_PORT={README_PORT}" in block  # not Debian's Mosquitto on 1883
    for agent in ("broker", "kiosk", "alice"):  # a user per agent, passwords in files
        assert f"{agent}.mqtt-password" in block
    assert "jq" not in block


def test_the_readme_by_hand_block_runs_as_written(tmp_path: Path) -> None:
    result = run_block(by_hand_block(), README_PORT, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    workdir = tmp_path / "micropay-by-hand"
    for secret in ("broker.mqtt-password", "kiosk.token", "alice.token"):
        assert (workdir / secret).stat().st_mode & 0o077 == 0
    assert re.search(r'"acknowledged_index":\s*\d+', result.stdout), result.stdout[-2000:]
    assert "PASS" in result.stdout, result.stdout[-2000:]
    # The vendor redeemed at its shutdown, before the period closed: the audit saw it.
    assert re.search(r"redemptions\s+[1-9]", result.stdout), result.stdout[-2000:]


def test_the_readme_allowance_block_runs_as_written(tmp_path: Path) -> None:
    block = by_hand_block("Daily allowances (MiniPay)")
    assert "--allowance 500" in block
    assert "set-allowance alice 200" in block
    assert "--allowance &" in block  # the vendor takes grants
    result = run_block(block, "18831", tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r'"per_vendor":\s*200', result.stdout), result.stdout[-2000:]
    assert re.search(r'"committed_today":\s*\{\s*"kiosk"', result.stdout), result.stdout[-2000:]
    assert "PASS" in result.stdout, result.stdout[-2000:]
