"""``micropay broker status`` and ``micropay vendor status`` against running daemons."""

from __future__ import annotations

import re

from agents.daemons.store_status import read_vendor_status
from agents.demo.processes import Demo
from tests.agents.cli.system import as_json, broker_status, micropay, pay, start_vendor, wait_for


def test_broker_status_reads_as_a_table_and_as_json_while_the_daemon_runs(system: Demo) -> None:
    daemon = system.processes["broker"]
    live = broker_status(system)
    table = micropay(system, "broker", "status", "--data-dir", str(system.broker_dir))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == f"broker       broker ({system.broker_dir})"
    assert lines[1] == (
        f"daemon       running (pid {daemon.pid}), answered on {system.broker_dir}/admin.sock"
    )
    assert lines[2] == f"ledger head  seq {live.ledger_head:,}, hash {live.ledger_head_hash}"
    assert lines[3] == "accounts     5: 3 buyers, 2 vendors; 5 enrolled, 0 revoked"
    assert "enrolled     alice, bob, carol, charger-7, news-stand" in lines

    scripted = as_json(
        micropay(system, "broker", "status", "--json", "--data-dir", str(system.broker_dir))
    )
    assert scripted["accounts"] == 5
    assert scripted["enrolled"] == ["alice", "bob", "carol", "charger-7", "news-stand"]
    assert scripted["ledger_head"] == live.ledger_head
    assert (scripted["commitments"], scripted["debited"], scripted["credited"]) == (0, 0, 0)
    assert "ok" not in scripted

    system.stop("broker")
    offline = micropay(system, "broker", "status", "--data-dir", str(system.broker_dir))
    assert offline.returncode == 0, offline.stderr
    assert "daemon       not running: read from the ledger" in offline.stdout
    assert f"seq {live.ledger_head:,}, hash {live.ledger_head_hash}" in offline.stdout


def test_vendor_status_while_the_vendor_runs_and_redeems(system: Demo) -> None:
    system.stop("news-stand")  # it redeems nothing yet; start it again redeeming every second
    vendor = start_vendor(system, "news-stand", "--redeem-interval", "1")
    store = system.root / "news-stand" / "store.db"
    buyer = pay(system, "carol", "news-stand", 40, 3)
    _, err = buyer.communicate(timeout=60)
    assert buyer.returncode == 0, err
    wait_for(lambda: read_vendor_status(store).units_redeemed == 120)
    assert vendor.poll() is None

    shown = micropay(
        system, "vendor", "status", "--name", "news-stand", "--data-dir", str(store.parent)
    )
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.startswith("vendor               news-stand (certificate serial ")
    assert "chains               1\n" in text
    assert "units held           120\n" in text
    assert "units redeemed       120\n" in text
    assert "awaiting redemption  0 units\n" in text
    receipt = re.search(r"^last receipt +ledger head seq (\d+) at \S+Z$", text, re.MULTILINE)
    assert receipt is not None, text
    assert 0 < int(receipt[1]) <= broker_status(system).ledger_head
    assert re.search(r"^carol +1 +120 +120 +0 +0$", text, re.MULTILINE), text

    scripted = as_json(
        micropay(system, "vendor", "status", "--json", "--data-dir", str(store.parent))
    )
    assert scripted["account"] == "news-stand"
    assert (scripted["chains"], scripted["units_held"], scripted["units_awaiting"]) == (1, 120, 0)
    assert scripted["amount_redeemed"] == 120  # news-stand: 1 minor unit per payword
    assert scripted["last_receipt_seq"] == int(receipt[1])
    assert scripted["buyers"] == [
        {
            "buyer": "carol",
            "chains": 1,
            "units_held": 120,
            "units_redeemed": 120,
            "units_awaiting": 0,
            "amount_awaiting": 0,
        }
    ]
    assert broker_status(system).credited == 120


def test_vendor_status_counts_what_awaits_redemption(system: Demo) -> None:
    buyer = pay(system, "alice", "charger-7", 10, 2)  # charger-7 redeems once a minute
    _, err = buyer.communicate(timeout=60)
    assert buyer.returncode == 0, err
    scripted = as_json(
        micropay(system, "vendor", "status", "--json", "--data-dir", str(system.root / "charger-7"))
    )
    assert (scripted["units_held"], scripted["units_redeemed"], scripted["units_awaiting"]) == (
        20,
        0,
        20,
    )
    assert scripted["amount_awaiting"] == 40  # charger-7: 2 minor units per payword
    assert scripted["last_receipt_seq"] == 0
    missing = micropay(system, "vendor", "status", "--data-dir", str(system.root / "nobody"))
    assert missing.returncode == 1
    assert "no agent store at" in missing.stderr
