"""``micropay audit`` as a user runs it: exit codes, the summary, JSON, exports."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from agents.cli.main import main
from tests.ledger.scenario import LedgerRun, build_ledger
from tests.support.world import seeded_identity


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> LedgerRun:
    path = tmp_path_factory.mktemp("cli") / "ledger.db"
    return asyncio.run(build_ledger(path, payments=60))


def test_audit_passes_and_says_so(run: LedgerRun, capsys: pytest.CaptureFixture[str]) -> None:
    key = seeded_identity("broker").sign_key.hex()
    assert main(["audit", str(run.path), "--broker-key", key, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "result: PASSED" in out
    assert "given on the command line" in out


def test_audit_json_and_exports(
    run: LedgerRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl, table = tmp_path / "events.jsonl", tmp_path / "events.csv"
    code = main(
        ["audit", str(run.path), "--json", "--export-jsonl", str(jsonl), "--export-csv", str(table)]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["first_failure"] is None
    lines = jsonl.read_text().splitlines()
    assert len(lines) == report["events"]
    first = json.loads(lines[0])
    assert first["seq"] == 1
    assert first["body"]["type"] == first["type"]
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == report["events"]
    assert rows[-1]["seq"] == str(report["events"])
    _one_scalar_per_column(rows, [json.loads(line) for line in lines])


def _one_scalar_per_column(rows: list[dict[str, str]], records: list[dict[str, Any]]) -> None:
    """Each CSV row is its event, one plain value per cell, no JSON to parse."""
    assert all(not cell.startswith(("{", "[")) for row in rows for cell in row.values())
    for row, record in zip(rows, records, strict=True):
        body = record["body"]
        assert row["type"] == body["type"]
        for name, value in body.items():
            if name == "lines":
                assert row["line_count"] == str(len(value))
            else:
                assert row[name] == str(value)
    kinds = {row["type"] for row in rows}
    assert {"paywords-redeemed", "invoice-issued", "statement-issued"} <= kinds


def test_audit_of_a_tampered_ledger_names_the_sequence(
    run: LedgerRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "tampered.db"
    copy.write_bytes(run.path.read_bytes())
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE events SET at = at + 1 WHERE seq = 9")
    assert main(["audit", str(copy), "--no-progress"]) == 1
    assert "result: FAILED at sequence 9: hash-links" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["audit", "/no/such/ledger.db"], "no such file"),
        (["audit", "{ledger}", "--broker-key", "abc"], "64 hex digits"),
        (["audit", "{ledger}", "--broker-key", "@/no/such/key"], "cannot read"),
        (["audit", "{ledger}", "--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_arguments_are_usage_errors(
    run: LedgerRun, arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(ledger=run.path) for a in arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_a_ledger_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a database")
    assert main(["audit", str(bogus), "--no-progress"]) == 1
    assert "result: FAILED" in capsys.readouterr().out


def test_the_first_lines_name_the_head_the_verdict_is_about(
    run: LedgerRun, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(f"file:{run.path}?mode=ro", uri=True) as db:
        seq, at, link = db.execute(
            "SELECT seq, at, hash FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at / 1000))
    assert main(["audit", str(run.path), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"micropay audit: {run.path}"
    assert lines[1] == f"  head          seq {seq:,} at {stamp}, hash {bytes(link).hex()}"
    assert main(["audit", str(run.path), "--json"]) == 0
    head = json.loads(capsys.readouterr().out)["head"]
    assert head == {"seq": seq, "at": at, "hash": bytes(link).hex()}
