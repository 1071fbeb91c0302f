"""The in-memory demo that ``make demo`` runs balances and reports it."""

from __future__ import annotations

import pytest

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
