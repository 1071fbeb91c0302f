"""The benchmarks still run (in their quick mode), so their figures can be re-measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize(
    "script",
    [
        "protocol_costs.py",
        "ledger_append.py",
        "ledger_audit.py",
        "vendor_throughput.py",
        "broker_commitments.py",
    ],
)
def test_benchmark_runs_in_quick_mode(script: str, tmp_path: Path) -> None:
    arguments = [sys.executable, str(BENCH / script), "--quick", "--json"]
    if script == "ledger_audit.py":
        arguments += ["--cache-dir", str(tmp_path)]
    if script in ("ledger_append.py", "broker_commitments.py"):
        arguments += ["--dir", str(tmp_path)]
    done = subprocess.run(  # noqa: S603 - our own scripts
        arguments, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)
