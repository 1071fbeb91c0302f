"""The scrip against PayWord bench still runs, and reports every row the README quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scrip_vs_payword.py"


def test_quick_run_reports_both_schemes_in_every_workload_and_the_broker() -> None:
    done = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(BENCH), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    rows = report["results"]
    assert all(row["cpu_us_per_op"] > 0 and row["per_second"] > 0 for row in rows)

    vendor = [row for row in rows if row["group"].startswith("vendor")]
    cases = {(row["group"], row["case"], row["scheme"]) for row in vendor}
    assert len(cases) == len(vendor) == 2 * 3 * 2  # answered at once / batched, 3 workloads
    assert {row["scheme"] for row in vendor} == {"PayWord", "scrip"}
    sizes = report["sizes"]
    assert {row["ops_per_run"] for row in vendor} == {
        sizes["payments"],
        sizes["buyers"] * sizes["each"],
        sizes["once"],
    }

    broker = {row["case"]: row["scheme"] for row in rows if row["group"].startswith("broker")}
    assert sorted(broker.values()) == ["PayWord", "PayWord", "scrip"]
    assert any(case.startswith("mint") for case in broker)

    ratios = report["ratios"]
    assert len(ratios) == 6 + 2
    assert all(ratio > 0 for ratio in ratios.values())
