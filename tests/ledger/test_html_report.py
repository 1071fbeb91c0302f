"""``micropay audit --html``: the page people look at, rendered by a real browser."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from agents.cli.main import main
from broker_ledger.audit_result import AuditReport
from broker_ledger.report_data import MAX_BUCKETS, AccountMoney, ReportData
from broker_ledger.report_html import TOP, as_html
from protocol.broker_events import PaywordsRedeemed
from tests.ledger.scenario import LedgerRun, build_ledger
from tests.support.world import seeded_identity

# Run in the page after layout: how many drawn shapes of each chart have a real size.
MEASURE = """<script>
window.addEventListener("load", () => {
  const charts = [...document.querySelectorAll("svg.pygal-chart")].map((svg) => {
    const shapes = [...svg.querySelectorAll(".plot .series path.line, .plot .series rect.rect")];
    const drawn = shapes.filter((s) => { const b = s.getBBox(); return b.width * b.height > 0
      || (s.tagName === "path" && b.width > 0); });
    const box = svg.getBoundingClientRect();
    return {shapes: shapes.length, drawn: drawn.length, width: box.width, height: box.height};
  });
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify(charts);
  document.body.appendChild(out);
});
</script></body>"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> LedgerRun:
    path = tmp_path_factory.mktemp("html") / "ledger.db"
    return asyncio.run(build_ledger(path, payments=150, fee_basis_points=150))


@pytest.fixture(scope="module")
def page(run: LedgerRun, tmp_path_factory: pytest.TempPathFactory) -> str:
    target = tmp_path_factory.mktemp("page") / "report.html"
    key = seeded_identity("broker").sign_key.hex()
    code = main(
        ["audit", str(run.path), "--broker-key", key, "--no-progress", "--html", str(target)]
    )
    assert code == 0
    return target.read_text()


def _chromium(*arguments: str, profile: Path) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    assert browser is not None, "chromium is installed by `make setup` (APT_PACKAGES)"
    return subprocess.run(  # noqa: S603 - our own arguments
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_the_page_opens_with_verdict_and_head_and_needs_nothing_outside(
    run: LedgerRun, page: str
) -> None:
    with sqlite3.connect(f"file:{run.path}?mode=ro", uri=True) as db:
        seq, link = db.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    verdict = page.index("Audit PASSED")
    assert verdict < page.index("<svg")
    assert f"seq {seq:,}" in page
    assert bytes(link).hex() in page
    assert 'class="failures"' not in page
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 4
    # Nothing is fetched when the page is viewed: no scripts, links, or remote references.
    assert not re.search(r"<script|<link|<img|<iframe|src=|@import|url\(http", page)
    for name in ("buyer1", "buyer2", "buyer3", "vendor1", "vendor2"):
        assert f"<td>{name}</td>" in page


def test_a_failed_audit_shows_its_failures_first_and_in_red(run: LedgerRun, tmp_path: Path) -> None:
    copy = tmp_path / "tampered.db"
    copy.write_bytes(run.path.read_bytes())
    with sqlite3.connect(copy) as db:
        db.execute("UPDATE events SET at = at + 1 WHERE seq = 9")
    target = tmp_path / "report.html"
    assert main(["audit", str(copy), "--no-progress", "--html", str(target)]) == 1
    page = target.read_text()
    assert "Audit FAILED" in page
    failures = page.index('<section class="failures">')
    assert failures < page.index("<svg")
    assert "<td>9</td><td>hash-links</td>" in page[failures:]
    assert re.search(r"\.failures\{color:#c62828\}", page)


def test_chromium_draws_every_chart(page: str, tmp_path: Path) -> None:
    measured = tmp_path / "measured.html"
    measured.write_text(page.replace("</body>", MEASURE))
    dom = _chromium("--dump-dom", measured.as_uri(), profile=tmp_path / "profile").stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom)
    assert found is not None, dom[-2000:]
    charts = json.loads(found.group(1))
    assert len(charts) == 4
    for chart in charts:
        assert chart["width"] > 500
        assert chart["height"] > 200
        assert chart["drawn"] >= 1
        assert chart["drawn"] >= chart["shapes"] // 2  # zero bars (a buyer credited) draw nothing
    shot = tmp_path / "report.png"
    report = tmp_path / "report.html"
    report.write_text(page)
    _chromium(
        f"--screenshot={shot}", "--window-size=1200,3000", report.as_uri(), profile=tmp_path / "p2"
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000


def _redeemed(at: int, buyer: str, vendor: str, units: int) -> PaywordsRedeemed:
    return PaywordsRedeemed(
        at=at,
        commitment_id=bytes(32),
        buyer=buyer,
        vendor=vendor,
        commitment=b"",
        from_index=0,
        index=units,
        payword=bytes(32),
        units=units,
        amount=units * 10,
    )


def test_aggregates_stay_bounded_and_tables_say_how_many_more() -> None:
    data = ReportData()
    events = 50_000
    for number in range(events):
        data.add(
            _redeemed(number * 137, f"buyer{number % 60}", f"vendor{number % 25}", 1 + number % 300)
        )
    assert len(data.buckets) <= MAX_BUCKETS
    assert sum(b.redemptions for b in data.buckets.values()) == events
    assert sum(b.units for b in data.buckets.values()) == sum(1 + n % 300 for n in range(events))
    assert max(data.sizes) == (300).bit_length() - 1
    page = as_html(AuditReport("x.db"), data)
    assert f"and {60 - TOP:,} more" in page
    assert f"and {25 - TOP:,} more" in page
    assert len(page) < 300_000


def test_a_ledger_of_scrip_alone_still_gets_its_charts() -> None:
    # Scrip deposits move money between accounts but add no redemption to chart over time.
    data = ReportData(accounts=[AccountMoney("alice", 90, 0, 0), AccountMoney("shop", 0, 90, 0)])
    page = as_html(AuditReport("x.db"), data)
    assert "Audit PASSED" in page
    assert "Payments and units redeemed over time" in page
