"""``micropay demo`` end to end, small: real processes, real Mosquitto, audit at the end."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from agents.cli.main import main


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
