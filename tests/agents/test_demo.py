"""The in-memory demo (``micropay demo --in-memory``) balances and reports it, per scheme."""

from __future__ import annotations

import re

import pytest

from agents.cli.main import main
from agents.demo import in_memory as memory_demo


def test_demo_balances_and_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert memory_demo.main(["--payments", "600", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "result: BALANCED" in out
    assert "rejected messages: 0" in out


def test_demo_refuses_a_nonsense_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        memory_demo.main(["--payments", "0"])
    assert exit_info.value.code == 2
    assert "--payments must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("scheme", ["scrip", "mixed"])
def test_each_scheme_balances_in_memory(scheme: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert memory_demo.main(["--payments", "300", "--seed", "5", "--scheme", scheme]) == 0
    out = capsys.readouterr().out
    assert "result: BALANCED" in out
    assert "rejected messages: 0" in out
    totals = re.search(
        r"scrip minted (\d+), credited (\d+), returned (\d+), outstanding (\d+)", out
    )
    assert totals is not None, out
    minted, credited, returned, outstanding = map(int, totals.groups())
    assert minted == credited + returned + outstanding
    assert credited > 0
    assert outstanding > 0  # scrip bought and not yet spent stays reserved, not debited
    assert "scrip conservation: HOLDS" in out
    rows = re.findall(r"^(\w+) +([\w-]+) +(\d+) +(\d+)  (.+)$", out, re.MULTILINE)
    assert len(rows) == 6
    assert all(paid == debited for _, _, paid, debited, _ in rows)
    by = {(buyer, vendor): how for buyer, vendor, _, _, how in rows}
    if scheme == "scrip":
        assert set(by.values()) == {"scrip"}
    else:
        # Each vendor takes both; charger-7 has the broker check each serial before it serves.
        assert by["alice", "news-stand"] == by["carol", "news-stand"] == "scrip"
        assert by["bob", "news-stand"] == "PayWord"
        assert by["bob", "charger-7"] == "scrip, serial checked on-line"
        assert by["alice", "charger-7"] == by["carol", "charger-7"] == "PayWord"


def test_payword_stays_the_default_in_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert memory_demo.main(["--payments", "100", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "scrip" not in out
    assert re.search(r"^buyer +vendor +paid +debited\n", out, re.MULTILINE)


def test_an_unknown_scheme_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["demo", "--scheme", "cash"], ["demo", "--in-memory", "--scheme", "cash"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "argument --scheme: invalid choice: 'cash'" in err
        assert "payword" in err
