"""The README's "Paying with scrip" block: every command parses, and the block runs as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from agents.cli.main import build_parser
from agents.ops.mosquitto import free_port

REPO = Path(__file__).resolve().parents[2]
README_PORT = "18831"


def scrip_block() -> str:
    """The ``sh`` block of the README's "Paying with scrip" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Paying with scrip\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the section has no sh block"
    return found[1]


def micropay_commands(block: str) -> list[list[str]]:
    """Each ``micropay`` command of the block, its continuation lines joined, as argv."""
    joined = block.replace("\\\n", " ").replace('"$MICROPAY_MQTT_PORT"', README_PORT)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "micropay":
            commands.append([w for w in words[1:] if w != "&"])
    return commands


def test_every_command_of_the_block_parses() -> None:
    commands = micropay_commands(scrip_block())
    parser = build_parser()
    actions = [tuple(argv[:2]) for argv in commands]
    for needed in (("vendor", "run"), ("buyer", "mint"), ("buyer", "pay"), ("buyer", "balance")):
        assert needed in actions
    assert ["audit"] in [argv[:1] for argv in commands]
    for argv in commands:
        if argv[0] == "audit":
            continue  # it names the ledger and key the block makes: the run below checks it
        args = parser.parse_args(argv)
        assert callable(args.handler), argv
        if argv[:2] == ["vendor", "run"]:
            assert args.scrip
        if argv[:2] == ["buyer", "pay"]:
            assert (args.scheme, args.item_name, args.payments) == ("scrip", "article", 3)
        if argv[:2] == ["buyer", "mint"]:
            assert (args.vendor, args.value) == ("shop", 500)


def test_the_readme_scrip_block_runs_as_written(tmp_path: Path) -> None:
    block = scrip_block()
    port = free_port()
    script = "\n".join(
        [
            "set -euo pipefail",
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
    assert re.search(r'"scheme":\s*"scrip"', result.stdout), result.stdout[-2000:]
    assert re.search(r'"paid":\s*90', result.stdout), result.stdout[-2000:]
    assert re.search(r'"value":\s*410', result.stdout), result.stdout[-2000:]
    assert "scrip-conservation" in result.stdout, result.stdout[-2000:]
