"""Secrets on command lines: every local user can read every process's argv.

While the whole demo runs (Mosquitto, the broker daemon, vendor daemons, buyers enrolling
and paying as separate processes), another thread reads ``/proc/*/cmdline`` of every
process on the machine, as ``ps`` would for any user. No MQTT password and no enrollment
token may ever appear there.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agents.cli.main import main
from agents.demo.processes import Demo, finish, pay, start


def command_lines(seen: set[str], stop: threading.Event) -> None:
    """Collect the command line of every process, every few milliseconds."""
    while not stop.is_set():
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue  # it ended meanwhile
            if raw:
                seen.add(raw.replace(b"\0", b" ").decode(errors="replace"))
        time.sleep(0.005)


def test_no_password_or_token_appears_in_any_command_line_while_the_demo_runs(
    tmp_path: Path,
) -> None:
    demo = Demo(tmp_path, 240)
    seen: set[str] = set()
    stop = threading.Event()
    scanner = threading.Thread(target=command_lines, args=(seen, stop), daemon=True)
    scanner.start()
    try:
        start(demo)
        pay(demo)
        _, report = finish(demo)
    finally:
        demo.stop_all()
        stop.set()
        scanner.join()
    assert report.ok
    secrets = [*demo.passwords.values(), *demo.tokens.values()]
    assert len(secrets) == 6 + 5  # 6 MQTT passwords (broker too), 5 enrollment tokens
    leaks = [(secret, line) for secret in secrets for line in seen if secret in line]
    assert leaks == []
    # The scan saw the processes that hold those secrets, so it proves something.
    for needle in ("broker run", "vendor run", "buyer enroll", "buyer pay", "mosquitto -c"):
        assert any(needle in line for line in seen), needle


@pytest.mark.parametrize(
    "argv",
    [
        ["vendor", "run", "--name", "v", "--token", "00"],
        ["buyer", "enroll", "--name", "b", "--token", "00"],
        ["buyer", "pay", "v", "--mqtt-password", "secret"],
        ["mqtt", "add-user", "dir", "name", "--password", "secret"],
    ],
)
def test_no_option_takes_a_secret_on_the_command_line(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(argv)
    assert usage.value.code == 2


def test_a_token_file_others_can_read_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = tmp_path / "alice.token"
    token.write_text("ab" * 16 + "\n")
    token.chmod(0o644)
    argv = ["buyer", "enroll", "--name", "alice", "--broker-pub", "x", "--token-file", str(token)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"micropay: error: {token} is open to group or others (mode 0644): chmod 600 {token}"
    ]
