"""``micropay demo`` end to end, small: real processes, real Mosquitto, audit at the end.

Each scheme runs: PayWord here, scrip and mixed through the README's "Which scheme when"
block, run as written, and mixed again with its files kept, to look into the ledger.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
import subprocess
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from agents.cli.main import main
from agents.demo.schemes import MINT_VALUE

REPO = Path(__file__).resolve().parents[2]
PRICES = {"news-stand": 5, "charger-7": 30}
"""Each vendor's item, which a scrip payment pays exactly: an article, a kWh."""


def test_demo_balances_and_keeps_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--payments", "120", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "result: BALANCED" in out
    assert "PASSED" in out
    page = (tmp_path / "report.html").read_text()
    assert "Audit PASSED" in page
    assert page.count("<svg") == 4
    assert "<td>alice</td>" in page
    for kept in ("broker/ledger.db", "alice/wallet.db", "news-stand/store.db", "logs/broker.log"):
        assert (tmp_path / kept).is_file(), kept
    assert (tmp_path / "mosquitto" / "mosquitto.conf").is_file()
    # The agents kept signed heads through the last money event (their redemption receipts).
    assert re.search(r"^witnessed +COVERED", out, re.MULTILINE)
    # Nothing it wrote is open to another local user (Mosquitto's persistence included).
    loose = [
        f"{path} {stat.S_IMODE(path.lstat().st_mode):04o}"
        for path in [tmp_path, *tmp_path.rglob("*")]
        if stat.S_IMODE(path.lstat().st_mode) & 0o077
    ]
    assert loose == []


def scrip_totals(out: str) -> dict[str, int]:
    """The audit's four scrip totals as the summary prints them."""
    pattern = r"^scrip (minted|credited|returned|outstanding) +([\d,]+)"
    return {name: number(value) for name, value in re.findall(pattern, out, re.MULTILINE)}


def number(text: str) -> int:
    """A figure as the summary prints it (with thousands separators)."""
    return int(text.replace(",", ""))


Row = tuple[int, int, int, str]
"""A summary row: payments, paid, minted (0 for PayWord), and how it was paid."""


def summary_rows(out: str) -> dict[tuple[str, str], Row]:
    """``(buyer, vendor) → row`` from the summary's table."""
    rows = re.findall(
        r"^(alice|bob|carol) +([\w-]+) +([\d,]+) +([\d,]+) +(?:([\d,]+) +[\d,]+ +)?(\S.*)$",
        out,
        re.MULTILINE,
    )
    return {
        (buyer, vendor): (number(count), number(paid), number(minted or "0"), how)
        for buyer, vendor, count, paid, minted, how in rows
    }


def assert_scrip_balances(out: str) -> dict[tuple[str, str], Row]:
    """The checks every scrip summary passes; returns its rows."""
    assert "result: BALANCED" in out
    assert re.search(r"^audit +PASSED", out, re.MULTILINE)
    assert re.search(r"^witnessed +COVERED", out, re.MULTILINE)  # deposits' receipts kept
    assert re.search(r"^scrip conservation +HOLDS", out, re.MULTILINE)
    rows = summary_rows(out)
    assert len(rows) == 6
    totals = scrip_totals(out)
    assert totals["minted"] == totals["credited"] + totals["returned"] + totals["outstanding"]
    scrip = [row for row in rows.values() if row[3].startswith("scrip")]
    # Scrip is debited as deposited: what the buyers spent, and what they minted.
    assert totals["credited"] == sum(paid for _, paid, _, _ in scrip) > 0
    assert totals["minted"] == sum(minted for _, _, minted, _ in scrip)
    assert totals["outstanding"] > 0  # bought and not spent: reserved until its deadline
    for (_, vendor), (count, paid, minted, how) in rows.items():
        if how.startswith("scrip"):
            assert paid == count * PRICES[vendor]
            assert minted % MINT_VALUE == 0
    everything = sum(paid for _, paid, _, _ in rows.values())
    assert re.search(rf"^invoiced \(debited\) +{everything:,}$", out, re.MULTILINE)
    return rows


def readme_block() -> str:
    """The ``sh`` block of the README's "Which scheme when" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Which scheme when\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the section has no sh block"
    return found[1]


def test_the_readme_scheme_block_runs_as_written(tmp_path: Path) -> None:
    block = readme_block()
    commands = [line.split("#")[0].split() for line in block.splitlines()]
    assert [c[1:] for c in commands if c[:1] == ["micropay"]] == [
        ["demo", "--scheme", "scrip", "--payments", "600"],
        ["demo", "--scheme", "mixed", "--payments", "600"],
        ["demo", "--scheme", "mixed", "--in-memory"],
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MICROPAY_", "VIRTUAL_ENV"))}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(  # noqa: S603 - the README's own commands
        ["bash", "-c", "set -euo pipefail\n" + block],  # noqa: S607 - bash from PATH
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    scrip, mixed, in_memory = result.stdout.split("result: BALANCED\n")[:3]
    rows = assert_scrip_balances(scrip + "result: BALANCED\n")
    assert {how for _, _, _, how in rows.values()} == {"scrip"}
    assert sum(count for count, _, _, _ in rows.values()) == 600
    rows = assert_scrip_balances(mixed + "result: BALANCED\n")
    assert {how for _, _, _, how in rows.values()} == {
        "PayWord",
        "scrip",
        "scrip, serial checked on-line",
    }
    assert "scrip conservation: HOLDS" in in_memory
    assert "rejected messages: 0" in in_memory
    # The README's sample is what the demo prints.
    text = (REPO / "README.md").read_text(encoding="utf-8")
    header = re.search(r"^buyer +vendor +payments .*paid by$", mixed, re.MULTILINE)
    assert header is not None
    assert header[0] in text


def deposits(ledger: Path) -> dict[str, int]:
    """How many ``scrip-deposited`` events each vendor's deposits made."""
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT body FROM events WHERE type = 'scrip-deposited'").fetchall()
    return dict(Counter(msgspec.msgpack.decode(body)["vendor"] for (body,) in rows))


def test_the_mixed_demo_checks_scrip_online_at_one_vendor_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["demo", "--scheme", "mixed", "--payments", "24", "--data-dir", str(tmp_path)]
    assert main(argv) == 0
    rows = assert_scrip_balances(capsys.readouterr().out)
    how = {pair: row[3] for pair, row in rows.items()}
    assert how == {
        ("alice", "news-stand"): "scrip",
        ("carol", "news-stand"): "scrip",
        ("bob", "news-stand"): "PayWord",
        ("bob", "charger-7"): "scrip, serial checked on-line",
        ("alice", "charger-7"): "PayWord",
        ("carol", "charger-7"): "PayWord",
    }
    # charger-7 deposited each payment before serving it; news-stand, with a spent set of
    # its own, deposited each serial's last generation once, as it stopped.
    assert deposits(tmp_path / "broker" / "ledger.db") == {
        "charger-7": rows["bob", "charger-7"][0],
        "news-stand": 2,
    }
