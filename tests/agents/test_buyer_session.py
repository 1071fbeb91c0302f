"""A paying session as an operator runs it: quiet unless asked, and Ctrl-C says how far it got.

The system runs as separate processes (Mosquitto, broker, vendors: the demo's), and the
buyer is the ``micropay`` command itself.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.demo.processes import VENDORS, Demo, start


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    demo = Demo(tmp_path_factory.mktemp("system"), 0)
    try:
        start(demo)
        yield demo
    finally:
        for vendor in VENDORS:  # while the broker still answers their redemptions
            demo.stop(vendor)
        demo.stop_all()


def buyer(demo: Demo, *arguments: str) -> list[str]:
    pub = str(demo.broker_dir / "broker.pub.json")
    common = ("--name", "alice", "--broker-pub", pub, "--data-dir", str(demo.root / "alice"))
    return demo.command("buyer", *arguments, *common)


def environment(demo: Demo) -> dict[str, str]:
    env = demo.env("alice")
    del env["MICROPAY_LOG_LEVEL"]  # the demo asks its agents for INFO; an operator does not
    return env


def test_a_short_command_prints_its_answer_and_nothing_else(system: Demo) -> None:
    quiet = subprocess.run(  # noqa: S603 - our own interpreter and module
        buyer(system, "balance"), env=environment(system), capture_output=True, check=False
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == b""
    assert json.loads(quiet.stdout)["account"] == "alice"
    verbose = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*buyer(system, "balance"), "-v"], env=environment(system), capture_output=True, check=False
    )
    assert verbose.returncode == 0
    assert b"INFO micropay.loop: alice connected to MQTT" in verbose.stderr


def spent(wallet: Path) -> int:
    try:
        with sqlite3.connect(f"file:{wallet}?mode=ro", uri=True) as db:
            (highest,) = db.execute("SELECT COALESCE(MAX(spent), 0) FROM channels").fetchone()
    except sqlite3.Error:
        return 0  # not created yet
    return int(highest)


def test_ctrl_c_during_pay_reports_what_was_paid_and_acknowledged(system: Demo) -> None:
    paying = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        buyer(system, "pay", "news-stand", "--payments", "1000000"),
        env=environment(system),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while spent(system.root / "alice" / "wallet.db") < 20:
        assert paying.poll() is None, paying.communicate()
        assert time.monotonic() < deadline, "no payment within 30 s"
        time.sleep(0.05)
    paying.send_signal(signal.SIGINT)
    out, err = paying.communicate(timeout=30)

    assert paying.returncode == 130, err
    summary = json.loads(out)
    assert summary["vendor"] == "news-stand"
    assert summary["interrupted"] is True
    assert 20 <= summary["units_paid"] < 1_000_000
    assert summary["amount_paid"] == summary["units_paid"] * VENDORS["news-stand"][0]
    assert 0 <= summary["units_acknowledged"] <= summary["units_paid"]
    assert err == (
        f"micropay: interrupted: paid news-stand {summary['units_paid']} units"
        f" (amount {summary['amount_paid']}), {summary['units_acknowledged']} acknowledged so"
        " far; the wallet keeps its place and resends the rest on the next run\n"
    )
    # The wallet agrees: it holds every payword this session spent, and no more.
    assert spent(system.root / "alice" / "wallet.db") == summary["units_paid"]


def test_one_command_pays_several_vendors_side_by_side(system: Demo) -> None:
    vendors = list(VENDORS)
    both = subprocess.run(  # noqa: S603 - our own interpreter and module
        buyer(system, "pay", *vendors, vendors[0], "--payments", "40", "--units", "2"),
        env=environment(system),
        capture_output=True,
        check=False,
    )
    assert both.returncode == 0, both.stderr
    answers = json.loads(both.stdout)  # a vendor named twice is paid once
    assert [answer["vendor"] for answer in answers] == vendors
    assert all(answer["payments"] == 40 and answer["units"] == 80 for answer in answers)
    assert all(answer["acknowledged_index"] >= 80 for answer in answers)
    one = subprocess.run(  # noqa: S603 - our own interpreter and module
        buyer(system, "pay", vendors[1], "--payments", "1"),
        env=environment(system),
        capture_output=True,
        check=False,
    )
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout)["vendor"] == vendors[1]  # one vendor: one object, as before
