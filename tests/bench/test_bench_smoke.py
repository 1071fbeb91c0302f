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
        "broker_commitments.py",
        "key_backends.py",
        "token_keys.py",
        "chain_memory.py",
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


def test_vendor_throughput_reports_both_clients_and_every_target() -> None:
    """The quick run's shape: both clients, every case, a verdict per target; no timings."""
    done = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(BENCH / "vendor_throughput.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    assert results["consistent"] is True
    assert set(results["clients"]) == {"mqtt5", "aiomqtt"}
    for rows in results["clients"].values():
        cases = [row["case"] for row in rows]
        assert cases == ["raw ceiling", "1 buyer", "16 buyers", "1 buyer at half peak"]
        assert all(row["rate"] > 0 for row in rows)
    verdicts = results["verdicts"]
    assert {v["client"] for v in verdicts} == {"mqtt5", "aiomqtt"}
    assert len(verdicts) == 2 * 6  # rate and ratio per case, CPU, p99 at half peak
    assert all(isinstance(v["pass"], bool) for v in verdicts)
