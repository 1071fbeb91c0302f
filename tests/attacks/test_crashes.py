"""SIGKILL each agent mid-run: no payment lost, nothing credited twice, the buyer loses at
most its spend reservation and the payments in flight. Real processes on a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from agents.daemons.buyer_agent import PAY_WINDOW
from agents.daemons.operator_protocol import BrokerStatus, ClosePeriod, Status
from agents.demo.processes import VENDORS, Demo, _operator
from broker_ledger.audit import LedgerAudit


def query(path: Path, sql: str) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute(sql).fetchone()
    return int(row[0] or 0) if row else 0


def vendor_amount(demo: Demo, vendor: str) -> int:
    return query(demo.root / vendor / "store.db", "SELECT SUM(amount) FROM chains")


def vendor_index(demo: Demo, vendor: str) -> int:
    return query(demo.root / vendor / "store.db", "SELECT MAX(idx) FROM chains")


def wallet_spent(demo: Demo, buyer: str) -> int:
    return query(demo.root / buyer / "wallet.db", "SELECT MAX(spent) FROM channels")


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def pay(
    demo: Demo, buyer: str, vendor: str, payments: int, units: int, *options: str
) -> subprocess.Popen[bytes]:
    pub = str(demo.broker_dir / "broker.pub.json")
    with (demo.root / "logs" / f"{buyer}.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            demo.command(
                *("buyer", "pay", vendor, "--name", buyer, "--broker-pub", pub),
                *("--data-dir", str(demo.root / buyer), "--payments", str(payments)),
                *("--units", str(units), "--timeout", "60"),
                *options,
            ),
            env=demo.env(buyer),
            stdout=subprocess.PIPE,
            stderr=log,
        )


def start_vendor(demo: Demo, name: str) -> None:
    unit_value, max_jump, item = VENDORS[name]
    demo.spawn(
        name,
        *(
            "vendor",
            "run",
            "--name",
            name,
            "--broker-pub",
            str(demo.broker_dir / "broker.pub.json"),
        ),
        *("--data-dir", str(demo.root / name)),
        *("--unit-value", str(unit_value), "--max-jump", str(max_jump), "--item", item),
        *demo.metrics_port(name),
    )


def mqtt_connected(demo: Demo, name: str) -> bool:
    """Whether daemon ``name`` says (in its metrics) that it is connected to Mosquitto."""
    try:
        with urllib.request.urlopen(demo.metrics_url(name), timeout=2) as answer:  # noqa: S310
            text = answer.read().decode()
    except OSError:
        return False
    return re.search(r"^micropay_\w+_mqtt_connected 1(\.0)?$", text, re.MULTILINE) is not None


def kill(demo: Demo, name: str) -> None:
    process = demo.processes.pop(name)
    process.send_signal(signal.SIGKILL)
    process.wait()


def settle_and_audit(demo: Demo) -> tuple[int, int]:
    """Stop the vendors (they redeem), close the period, stop the broker, audit.

    Only once the broker and every vendor are connected: a vendor stopped while it cannot
    reach Mosquitto keeps its paywords for its next start instead of redeeming them.
    """
    for name in ("broker", *VENDORS):
        wait_for(lambda name=name: mqtt_connected(demo, name))  # type: ignore[misc]
    for name in VENDORS:
        demo.stop(name)
    closed = _operator(demo, ClosePeriod(period="p", fee_basis_points=0))
    demo.stop("broker")
    report = LedgerAudit(demo.broker_dir / "ledger.db").run()
    assert report.ok, report.findings
    return closed.summary.debited, report.redemptions


def test_vendor_killed_mid_run_loses_no_payment(demo: Demo) -> None:
    buyer = pay(demo, "alice", "news-stand", 400, 3)
    wait_for(lambda: vendor_amount(demo, "news-stand") > 100)
    kill(demo, "news-stand")
    time.sleep(0.5)
    start_vendor(demo, "news-stand")
    out, _ = buyer.communicate(timeout=120)
    assert buyer.returncode == 0
    paid = json.loads(out)["units"]  # news-stand: 1 minor unit per payword
    assert paid == 1200
    assert vendor_amount(demo, "news-stand") == paid
    debited, _ = settle_and_audit(demo)
    assert debited == paid


def test_broker_killed_mid_run_credits_everything_exactly_once(demo: Demo) -> None:
    buyer = pay(demo, "bob", "charger-7", 300, 4)
    wait_for(lambda: vendor_amount(demo, "charger-7") > 0)
    kill(demo, "broker")
    out, _ = buyer.communicate(timeout=120)  # vendors serve while the broker is down
    assert buyer.returncode == 0
    paid = json.loads(out)["units"] * VENDORS["charger-7"][0]
    demo.stop("charger-7")  # cannot redeem now: keeps the paywords in its store
    assert vendor_amount(demo, "charger-7") == paid
    demo.spawn(
        "broker", "broker", "run", "--data-dir", str(demo.broker_dir), *demo.metrics_port("broker")
    )
    wait_for((demo.broker_dir / "admin.sock").exists)
    start_vendor(demo, "charger-7")  # redeems what it kept (store-and-forward)
    debited, redemptions = settle_and_audit(demo)
    assert debited == paid
    assert redemptions >= 1


def served(demo: Demo, vendor: str) -> list[int]:
    """The indices at which ``vendor`` served an item, in order (each at most once)."""
    with sqlite3.connect(f"file:{demo.root / vendor / 'store.db'}?mode=ro", uri=True) as db:
        return [int(i) for (i,) in db.execute("SELECT idx FROM served ORDER BY idx")]


def test_buyer_killed_mid_stream_loses_at_most_its_reservation_and_never_spends_twice(
    demo: Demo,
) -> None:
    ahead, price = 100, 5  # --reserve-ahead 100; an article at news-stand costs 5 units
    item = ("--item-name", "article")
    buyer = pay(demo, "carol", "news-stand", 5000, price, *item, "--reserve-ahead", str(ahead))
    wait_for(lambda: wallet_spent(demo, "carol") >= 3 * ahead)  # the wallet's reservation
    buyer.send_signal(signal.SIGKILL)
    buyer.communicate()
    reserved = wallet_spent(demo, "carol")
    assert reserved % ahead == 0  # written once per 100 units, each time 100 beyond

    again = pay(demo, "carol", "news-stand", 10, price, *item)
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0
    final = reserved + 10 * price
    assert json.loads(out)["acknowledged_index"] == final
    assert wallet_spent(demo, "carol") == final  # the session handed back nothing it kept

    # What the vendor served before the kill: every payment that reached it, in order.
    before = [index for index in served(demo, "news-stand") if index <= reserved]
    held = len(before) * price
    assert before == list(range(price, held + 1, price))
    # At most the reservation's units beyond what was paid, plus the payments in flight.
    assert 0 <= reserved - held <= ahead + PAY_WINDOW
    # Every payment after the restart went above the reservation: no payword reused.
    after = [index for index in served(demo, "news-stand") if index > reserved]
    assert after == list(range(reserved + price, final + 1, price))
    # The vendor credited each unit once, and no more than the wallet says it paid.
    assert vendor_index(demo, "news-stand") == final
    assert vendor_amount(demo, "news-stand") == final * VENDORS["news-stand"][0]
    debited, _ = settle_and_audit(demo)
    assert debited == vendor_amount(demo, "news-stand")


def test_mosquitto_killed_mid_run_loses_no_money(demo: Demo) -> None:
    buyer = pay(demo, "alice", "news-stand", 4000, 3)
    wait_for(lambda: vendor_amount(demo, "news-stand") > 100)
    assert demo.mosquitto is not None
    assert buyer.poll() is None, "Mosquitto is killed while the buyer pays"
    demo.mosquitto.kill()  # SIGKILL: whatever it had acknowledged but not saved is gone
    time.sleep(0.5)
    demo.mosquitto.start()  # same port, same persistence directory
    out, _ = buyer.communicate(timeout=120)
    assert buyer.returncode == 0, "the buyer reconnects and finishes its payments"
    paid = json.loads(out)["units"]
    assert paid == 12000
    assert vendor_amount(demo, "news-stand") == paid
    debited, _ = settle_and_audit(demo)
    assert debited == paid


def test_operator_commands_reach_the_running_daemon(demo: Demo) -> None:
    status = asyncio.run(_status(demo))
    assert set(status.enrolled) == {"news-stand", "charger-7", "alice", "bob", "carol"}


async def _status(demo: Demo) -> BrokerStatus:
    from agents.daemons.operator_client import operator_request

    status = await operator_request(demo.broker_dir, Status())
    assert isinstance(status, BrokerStatus), status
    return status
