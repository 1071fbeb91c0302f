"""The daemons' Prometheus endpoints, scraped over HTTP from the demo's real processes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.demo.processes import BUYERS, VENDORS, Demo, pay, start

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample an endpoint serves, keyed by name and sorted labels."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own daemon
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def names(url: str) -> set[str]:
    """Every metric name an endpoint declares, samples or not (a labelled counter at zero)."""
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own daemon
        text = response.read().decode()
    return {
        name
        for family in text_string_to_metric_families(text)
        for name in (
            family.name + "_total" if family.type == "counter" else family.name,
            *(sample.name for sample in family.samples),
        )
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value."""
    return samples[name, tuple(sorted(labels.items()))]


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """The demo's processes, each daemon serving its metrics on a free port."""
    running = Demo(tmp_path, 24)
    try:
        start(running)
        yield running
    finally:
        running.stop_all()


def test_scraped_counters_match_the_demo_totals(demo: Demo) -> None:
    """Payments the buyers made are what each vendor counts; redemptions what the broker credits."""
    pay(demo)
    for vendor, (unit_value, _, _) in VENDORS.items():
        samples = scrape(demo.metrics_url(vendor))
        made = sum(demo.count.get((buyer, vendor), 0) for buyer in BUYERS)
        paid = sum(demo.paid.get((buyer, vendor), 0) for buyer in BUYERS)
        assert value(samples, "micropay_vendor_payments_total") == made > 0
        assert value(samples, "micropay_vendor_amount_total") == paid
        assert value(samples, "micropay_vendor_units_total") == paid // unit_value
        assert value(samples, "micropay_vendor_units_unredeemed") == paid // unit_value
        assert value(samples, "micropay_vendor_mqtt_connected") == 1
        assert value(samples, "micropay_vendor_mqtt_messages_received_total") >= made
        assert value(samples, "micropay_vendor_mqtt_messages_sent_total", to="peer") > 0
        assert value(samples, "micropay_vendor_store_commit_seconds_count") > 0
        chains = sum(
            value(samples, "micropay_vendor_chains", state=state)
            for state in ("active", "redeeming", "reconfirming")
        )
        assert chains == value(samples, "micropay_vendor_commitments_accepted_total") > 0
    before = scrape(demo.metrics_url("broker"))
    assert value(before, "micropay_broker_enrollments_total") == len(VENDORS) + len(BUYERS)
    assert value(before, "micropay_broker_accounts_opened_total") == len(VENDORS) + len(BUYERS)
    assert value(before, "micropay_broker_amount_credited_total") == 0
    for vendor in VENDORS:
        demo.stop(vendor)  # each redeems what it holds on the way out
    after = scrape(demo.metrics_url("broker"))
    assert value(after, "micropay_broker_amount_credited_total") == sum(demo.paid.values())
    units = sum(amount // VENDORS[vendor][0] for (_, vendor), amount in demo.paid.items())
    assert value(after, "micropay_broker_units_credited_total") == units
    assert value(after, "micropay_broker_redemptions_total") >= len(VENDORS)
    assert value(after, "micropay_broker_redemptions_refused_total") == 0
    assert value(after, "micropay_broker_ledger_head_seq") > value(
        before, "micropay_broker_ledger_head_seq"
    )
    assert value(after, "micropay_broker_ledger_events_per_append_count") > 0
    assert value(after, "micropay_broker_mqtt_connected") == 1
    head = value(after, "micropay_broker_ledger_head_seq")
    assert 0 <= value(after, "micropay_broker_projector_lag_events") <= head
    # The demo's broker publishes a moved head every second, and projects every two.
    assert 0 <= value(after, "micropay_broker_ledger_head_published_age_seconds") < 30
    deadline = time.monotonic() + 15
    while value(scrape(demo.metrics_url("broker")), "micropay_broker_projector_lag_events"):
        assert time.monotonic() < deadline, "the projector did not catch up within 15 s"
        time.sleep(0.2)


def test_a_busy_metrics_port_is_one_clear_line(demo: Demo, tmp_path: Path) -> None:
    """A port already taken stops the daemon at once, exit 1, before it opens its store."""
    busy = demo.metrics["broker"]
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            *(sys.executable, "-m", "agents.cli.main", "vendor", "run", "--name", "late"),
            *("--broker-pub", str(demo.broker_dir / "broker.pub.json")),
            *("--data-dir", str(tmp_path / "late"), "--metrics-port", str(busy)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"micropay: error: cannot serve metrics on 127.0.0.1:{busy}: Address already in use"
    ]
    assert not (tmp_path / "late" / "store.db").exists()


def test_the_endpoint_stops_with_the_daemon(demo: Demo) -> None:
    """Once the broker has stopped, its metrics port is free again."""
    port = demo.metrics["broker"]
    assert value(scrape(demo.metrics_url("broker")), "micropay_broker_mqtt_connected") == 1
    for name in list(demo.processes):
        demo.stop(name)
    with socket.socket() as probe:
        # Linux refuses this bind while anything still listens there, even with REUSEADDR.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()
        assert probe.getsockname()[1] == port


CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
METRIC = re.compile(r"\bmicropay_[a-z_]+[a-z]\b")


def test_alerts_and_dashboard_name_only_metrics_the_daemons_serve(demo: Demo) -> None:
    """Every ``micropay_*`` name in the alert rules and the dashboard is in a live scrape."""
    pay(demo)
    served = {name for daemon in demo.metrics for name in names(demo.metrics_url(daemon))}
    alerts = (CONTRIB / "prometheus" / "alerts.yml").read_text()
    dashboard = json.loads((CONTRIB / "grafana" / "micropay.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = set(METRIC.findall(alerts)) | {m for expr in exprs for m in METRIC.findall(expr)}
    assert len(named) >= 20
    assert named - served == set()
    assert alerts.startswith("#")
    assert "\t" not in alerts
    rules = re.findall(r"^      - alert: (\w+)\n        expr: ", alerts, flags=re.MULTILINE)
    assert len(rules) == alerts.count("- alert:") >= 8
    assert len(dashboard["panels"]) == len({panel["id"] for panel in dashboard["panels"]})


def test_the_config_file_sets_the_metrics_port_within_bounds(tmp_path: Path) -> None:
    """``metrics_port`` is a key of ``[broker]``, ``[vendor]`` and ``[buyer]``, checked alike."""
    good = tmp_path / "good.toml"
    good.write_text(
        '[broker]\nmetrics_port = 9464\n[vendor]\nmetrics_host = "0.0.0.0"\n'
        "[buyer]\nmetrics_port = 9466\n"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[vendor]\nmetrics_port = 70000\n")
    check = [sys.executable, "-m", "agents.cli.main", "config", "check"]
    accepted = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*check, str(good)], capture_output=True, text=True, check=False, timeout=60
    )
    refused = subprocess.run(  # noqa: S603 - our own interpreter and module
        [*check, str(bad)], capture_output=True, text=True, check=False, timeout=60
    )
    assert accepted.returncode == 0, accepted.stderr
    assert re.search(
        r"^metrics_port += 9464 +# .*good\.toml:2 \(broker\.metrics_port\)",
        accepted.stdout,
        re.MULTILINE,
    )
    assert refused.returncode == 2
    assert "metrics_port" in refused.stderr
    assert re.search(
        r'^metrics_host +=\ "0\.0\.0\.0" +# .*good\.toml:4', accepted.stdout, re.MULTILINE
    )
    assert "65,535" in refused.stderr
    assert re.search(
        r"^metrics_port += 9466 +# .*good\.toml:6 \(buyer\.metrics_port\)",
        accepted.stdout,
        re.MULTILINE,
    )
