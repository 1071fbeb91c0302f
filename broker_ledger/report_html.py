"""The audit report as one self-contained HTML page people can look at.

Verdict and verified head first, failures next (in red), then charts drawn by pygal as
inline SVG (its tooltip script is left out, so nothing is fetched when the page is
opened) and top-N tables. Everything comes from the audit's bounded aggregates, so the
page stays small for any ledger length.
"""

from __future__ import annotations

import html
import re
import sys
import time
from typing import Final

import pygal
from pygal.style import Style

from broker_ledger.audit_result import AuditReport
from broker_ledger.report import head_line
from broker_ledger.report_data import ReportData, Traffic

# pygal adds a legacy import hook (for ``pygal.maps`` plugins, unused here) that lacks
# ``find_spec``: every later import that reaches it warns. Take it out again.
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "PluginImportFixer"]

TOP: Final = 20
CONFIG_SCRIPT: Final = re.compile(r"<script[^>]*>window\.pygal[^<]*</script>")
STYLE: Final = Style(
    background="white",
    plot_background="white",
    font_family="sans-serif",
    colors=("#1f6fb2", "#e08a1e", "#2e9b4f", "#8e44ad"),
)
CSS: Final = """
body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222}
.verdict{font-size:1.6em;padding:.4em .8em;border-radius:6px;color:white}
.passed{background:#2e7d32}.failed{background:#c62828}
.failures{color:#c62828}.failures td{border-bottom:1px solid #f3c0c0;text-align:left}
table{border-collapse:collapse;margin:1em 0}
td,th{padding:.2em .8em;text-align:right}td:first-child,th:first-child{text-align:left}
th{border-bottom:2px solid #999}code{font-size:.9em;word-break:break-all}
figure{margin:1.5em 0}figcaption{font-weight:bold}
"""


def _stamp(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _chart(chart: pygal.Graph, caption: str) -> str:
    # pygal inlines its settings for a tooltip script we do not ship: drop them too.
    svg = CONFIG_SCRIPT.sub("", chart.render(is_unicode=True))
    return f"<figure><figcaption>{html.escape(caption)}</figcaption>{svg}</figure>"


def _config() -> dict[str, object]:
    return {
        "style": STYLE,
        "js": [],
        "disable_xml_declaration": True,
        "width": 1000,
        "height": 380,
        "x_label_rotation": 30,
        "truncate_label": 24,
        "legend_at_bottom": True,
    }


def _over_time(data: ReportData) -> str:
    chart = pygal.Line(
        **_config(), show_dots=False, show_minor_x_labels=False, x_labels_major_count=10
    )
    slots = sorted(data.buckets)
    chart.x_labels = [_stamp(slot * data.width_ms) for slot in slots]
    chart.add("units redeemed", [data.buckets[s].units for s in slots])
    # pygal cannot scale a secondary axis without values: a ledger of scrip alone has none.
    if slots:
        chart.add(
            "payments (redemptions)", [data.buckets[s].redemptions for s in slots], secondary=True
        )
    seconds = data.width_ms / 1000
    return _chart(chart, f"Payments and units redeemed over time (UTC, per {seconds:g} s)")


def _per_account(data: ReportData) -> str:
    # Buyers are debited and vendors credited: the busiest half of each, so neither
    # side crowds the other out.
    half = TOP // 2
    buyers = sorted(data.accounts, key=lambda a: (-a.debited, a.account))[:half]
    vendors = sorted(data.accounts, key=lambda a: (-a.credited, a.account))[:half]
    shown = [a for a in buyers if a.debited] + [a for a in vendors if a.credited]
    chart = pygal.Bar(**_config())
    chart.x_labels = [a.account for a in shown]
    chart.add("debited", [a.debited for a in shown])
    chart.add("credited", [a.credited for a in shown])
    hidden = len(data.accounts) - len(shown)
    more = f", and {hidden:,} more" if hidden > 0 else ""
    return _chart(chart, f"Debit and credit per account (minor units, top {half} each){more}")


def _fees(data: ReportData) -> str:
    chart = pygal.Bar(**_config())
    chart.x_labels = [p.period for p in data.periods]
    chart.add("fees", [p.fees for p in data.periods])
    earlier = data.periods_total - len(data.periods)
    note = f" ({earlier:,} earlier periods not shown)" if earlier else ""
    return _chart(chart, f"Fees per billing period (minor units){note}")


def _sizes(data: ReportData) -> str:
    chart = pygal.Bar(**_config())
    bins = range(max(data.sizes, default=0) + 1)
    chart.x_labels = [str(1 << b) if b == 0 else f"{1 << b}-{(2 << b) - 1}" for b in bins]
    chart.add("redemptions", [data.sizes.get(b, 0) for b in bins])
    return _chart(chart, "Redemption size distribution (units per redemption)")


def _more(total: int) -> str:
    return f", and {total - TOP:,} more" if total > TOP else ""


def _table(title: str, parties: dict[str, Traffic]) -> str:
    ranked = sorted(parties.items(), key=lambda item: (-item[1].amount, item[0]))
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{t.redemptions:,}</td>"
        f"<td>{t.units:,}</td><td>{t.deposits:,}</td><td>{t.amount:,}</td></tr>"
        for name, t in ranked[:TOP]
    )
    extra = len(ranked) - TOP
    if extra > 0:
        rest = Traffic()
        for _, traffic in ranked[TOP:]:
            rest.merge(traffic)
        rows += (
            f"<tr><td>and {extra:,} more</td><td>{rest.redemptions:,}</td>"
            f"<td>{rest.units:,}</td><td>{rest.deposits:,}</td><td>{rest.amount:,}</td></tr>"
        )
    return (
        f"<h2>{html.escape(title)}</h2><table><tr><th>name</th><th>redemptions</th>"
        f"<th>units</th><th>scrip deposits</th><th>amount</th></tr>{rows}</table>"
    )


def _failures(report: AuditReport) -> str:
    if report.ok:
        return ""
    rows = "".join(
        f"<tr><td>{'ledger' if f.seq is None else f'{f.seq:,}'}</td>"
        f"<td>{html.escape(f.check)}</td><td>{html.escape(f.detail)}</td></tr>"
        for f in sorted(report.findings, key=lambda f: -1 if f.seq is None else f.seq)
    )
    shown = len(report.findings)
    note = f" ({shown} of {report.findings_total:,} shown)" if shown < report.findings_total else ""
    failed = ", ".join(name for name, ok in report.passed.items() if not ok)
    return (
        f'<section class="failures"><h2>Failures{note}</h2><p>checks failed: {failed}</p>'
        f"<table><tr><th>sequence</th><th>check</th><th>detail</th></tr>{rows}</table></section>"
    )


def _scrip_line(report: AuditReport) -> str:
    """The four totals of scrip-conservation, as the check reads them."""
    return (
        f"{report.scrip_serials:,} serials, {report.scrip_deposits:,} deposits: minted"
        f" {report.scrip_minted:,} = credited {report.scrip_credited:,} + returned"
        f" {report.scrip_returned:,} + outstanding {report.scrip_outstanding:,}"
    )


def _summary(report: AuditReport) -> str:
    facts = (
        ("events", f"{report.events:,} in {report.seconds:.2f} s"),
        ("broker", f"{report.broker_id or '?'} (public key {report.key_source})"),
        ("accounts", f"{report.accounts:,}"),
        ("commitments", f"{report.commitments:,}"),
        ("redemptions", f"{report.redemptions:,}"),
        ("signatures verified", f"{report.signatures_verified:,}"),
        ("payword hashes checked", f"{report.hashes_checked:,}"),
        ("checkpoints verified", f"{report.checkpoints:,}"),
        ("closed periods", f"{report.periods:,}, fees {report.fees:,}"),
        ("money", f"debited {report.debited:,}, credited {report.credited:,}"),
        ("scrip", _scrip_line(report)),
    )
    rows = "".join(f"<tr><td>{k}</td><td>{html.escape(v)}</td></tr>" for k, v in facts)
    return f"<table>{rows}</table>"


def as_html(report: AuditReport, data: ReportData) -> str:
    """The whole page: nothing in it refers to anything outside the file."""
    verdict = "PASSED" if report.ok else "FAILED"
    head = "Head verified" if report.ok else "Head read (not verified)"
    title = html.escape(f"micropay audit: {report.path}")
    charts = (
        (_over_time(data) + _per_account(data) + _fees(data) + _sizes(data))
        if data.buckets or data.accounts
        else "<p>No redemptions to draw.</p>"
    )
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body><h1>{title}</h1>"
        f'<p class="verdict {verdict.lower()}">Audit {verdict}</p>'
        f"<p>{head}: <code>{html.escape(head_line(report))}</code></p>"
        f"{_failures(report)}{_summary(report)}{charts}"
        f"{_table('Buyers', data.buyers)}{_table('Vendors', data.vendors)}</body></html>\n"
    )
