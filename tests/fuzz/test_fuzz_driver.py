"""The long-run driver behind ``make fuzz``: it runs, reports, and fails loudly on a finding."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz import run, surfaces


def test_a_short_run_reports_its_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--engine", "builtin", "--runs", "600", "--report-every", "300"]
    assert run.main([*argv, "--rebuild-every", "400", "--crashes", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for figure in (
        "inputs          600",
        "inputs/s",
        "error types",
        "peak RSS",
        "unexpected      none",
    ):
        assert figure in out
    assert not list(tmp_path.iterdir())


def test_a_finding_is_printed_saved_and_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_rig: surfaces.Rig, data: bytes) -> str:
        raise ZeroDivisionError(len(data))

    monkeypatch.setattr(surfaces.Rig, "run", broken)
    assert run.main(["--engine", "builtin", "--runs", "50", "--crashes", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    (saved,) = tmp_path.iterdir()
    assert saved.read_bytes().hex() in out
    assert "FINDING at input 1: ZeroDivisionError" in out
    assert run.main(["--engine", "builtin", str(saved)]) == 1


def test_saved_inputs_replay_against_a_fresh_rig(tmp_path: Path) -> None:
    seeds = surfaces.Rig().seeds()
    paths = []
    for n, seed in enumerate(seeds[:: len(seeds) // 8]):
        paths.append(tmp_path / f"seed-{n}")
        paths[-1].write_bytes(seed)
    assert run.main(["--engine", "builtin", *map(str, paths)]) == 0
