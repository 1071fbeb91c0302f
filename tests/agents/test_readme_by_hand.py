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


def by_hand_block() -> str:
    """The first ``sh`` block of the README's "Running it by hand" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Running it by hand\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the section has no sh block"
    return found[1]


def test_the_block_names_what_a_fresh_machine_needs() -> None:
    block = by_hand_block()
    assert ". .venv/bin/activate" in block  # `micropay` on PATH
    assert f"MICROPAY_MQTT_PORT={README_PORT}" in block  # not Debian's Mosquitto on 1883
    for agent in ("broker", "kiosk", "alice"):  # a user per agent, passwords in files
        assert f"{agent}.mqtt-password" in block
    assert "jq" not in block


def test_the_readme_by_hand_block_runs_as_written(tmp_path: Path) -> None:
    block = by_hand_block()
    port = free_port()
    script = "\n".join(
        [
            "set -euo pipefail",
            # Whatever the block leaves running (on failure) is stopped with the script.
            "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT",
            block.replace(README_PORT, str(port)),
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROPAY_", "VIRTUAL_ENV"))}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(  # noqa: S603 - the README's own commands
        ["bash", "-c", script],  # noqa: S607 - bash from PATH, as the user's shell
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    workdir = tmp_path / "micropay-by-hand"
    for secret in ("broker.mqtt-password", "kiosk.token", "alice.token"):
        assert (workdir / secret).stat().st_mode & 0o077 == 0
    assert re.search(r'"acknowledged_index":\s*\d+', result.stdout), result.stdout[-2000:]
    assert "PASS" in result.stdout, result.stdout[-2000:]
    # The vendor redeemed at its shutdown, before the period closed: the audit saw it.
    assert re.search(r"redemptions\s+[1-9]", result.stdout), result.stdout[-2000:]
