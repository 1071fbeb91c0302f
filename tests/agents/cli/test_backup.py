"""``micropay broker|vendor|buyer backup`` while the daemons run: consistent, private, checked.

A ``cp`` of the ledger while the broker ran once gave a copy with 17 of 22 events that
still audited PASSED. The backup command copies through SQLite's online backup API (one
snapshot, committed WAL frames included) and audits the copy.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import threading
from pathlib import Path

from agents.daemons.broker_files import read_public
from agents.daemons.operator_client import operator_request
from agents.daemons.operator_protocol import AccountOpened, OpenAccount
from agents.daemons.store_status import read_vendor_status
from agents.demo.processes import Demo
from broker_ledger.audit import LedgerAudit
from tests.agents.cli.system import broker_status, micropay, pay, wait_for


def sign_key(system: Demo) -> bytes:
    return read_public(system.broker_dir / "broker.pub.json").sign_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def accounts_in(ledger: Path) -> set[str]:
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT stream FROM event_log WHERE type = 'account-opened'").fetchall()
    return {str(row[0]).removeprefix("account:") for row in rows}


class Opener(threading.Thread):
    """Opens accounts through the running daemon, one after another, until stopped."""

    def __init__(self, system: Demo) -> None:
        super().__init__(daemon=True)
        self.system = system
        self.opened: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            name = f"device-{len(self.opened)}"
            request = OpenAccount(account=name, role="buyer", credit_limit=100)
            answer = asyncio.run(operator_request(self.system.broker_dir, request))
            assert isinstance(answer, AccountOpened), answer
            self.opened.append(name)


def test_a_backup_while_the_broker_works_audits_and_holds_every_earlier_event(
    system: Demo,
) -> None:
    key = "@" + str(system.broker_dir / "broker.pub.json")
    opener = Opener(system)
    opener.start()
    buyer = pay(system, "alice", "news-stand", 300, 2)
    try:
        wait_for(lambda: len(opener.opened) >= 10)
        opened_before = list(opener.opened)
        head_before = broker_status(system).ledger_head
        done = micropay(
            system,
            "broker",
            "backup",
            str(system.root / "backups") + "/",
            "--data-dir",
            str(system.broker_dir),
        )
        wait_for(lambda: len(opener.opened) >= len(opened_before) + 5)  # still serving
    finally:
        opener.stop.set()
        opener.join(30)
    out, err = buyer.communicate(timeout=120)
    assert buyer.returncode == 0, err
    assert json.loads(out)["units"] == 600
    assert done.returncode == 0, done.stderr
    (copy,) = (system.root / "backups").iterdir()
    assert copy.name.startswith("ledger-")
    assert mode(copy) == 0o600
    assert mode(copy.parent) == 0o700
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"backup     {copy} (mode 0600")
    assert "result: PASSED" in done.stdout
    report = LedgerAudit(copy, sign_key(system)).run()
    assert report.ok, report.findings
    assert report.head_seq >= head_before
    assert set(opened_before) <= accounts_in(copy)
    assert f"seq {report.head_seq:,} at " in done.stdout
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # one file, no -wal

    # Once the vendor redeems (it does on its way out), a second copy holds the redemptions.
    system.stop("news-stand")
    second = system.root / "backups" / "after-redemption.db"
    done = micropay(system, "broker", "backup", str(second), "--data-dir", str(system.broker_dir))
    assert done.returncode == 0, done.stderr
    report = LedgerAudit(second).run()
    assert report.ok, report.findings
    assert report.redemptions >= 1
    assert report.debited == 600
    assert micropay(system, "audit", str(second), "--broker-key", key).returncode == 0


def test_vendor_and_buyer_backups_while_they_run(system: Demo) -> None:
    buyer = pay(system, "bob", "news-stand", 400, 1)
    store = system.root / "news-stand" / "store.db"
    wait_for(lambda: read_vendor_status(store).units_held >= 50)
    held_before = read_vendor_status(store).units_held
    vendor_copy = system.root / "vendor-backup" / "store.db"
    done = micropay(
        system,
        "vendor",
        "backup",
        str(vendor_copy),
        "--name",
        "news-stand",
        "--data-dir",
        str(system.root / "news-stand"),
    )
    assert done.returncode == 0, done.stderr
    assert "integrity  ok" in done.stdout
    assert mode(vendor_copy) == 0o600
    assert mode(vendor_copy.parent) == 0o700
    copied = read_vendor_status(vendor_copy)
    assert copied.account == "news-stand"
    assert copied.units_held >= held_before
    assert f"units held           {copied.units_held:,}" in done.stdout

    wallet_copy = system.root / "wallet-backup.db"
    done = micropay(
        system,
        "buyer",
        "backup",
        str(wallet_copy),
        "--name",
        "bob",
        "--data-dir",
        str(system.root / "bob"),
    )  # while bob pays
    assert done.returncode == 0, done.stderr
    assert mode(wallet_copy) == 0o600
    assert "buyer             bob" in done.stdout
    assert "channels          1" in done.stdout
    _, err = buyer.communicate(timeout=120)
    assert buyer.returncode == 0, err

    again = micropay(
        system, "buyer", "backup", str(wallet_copy), "--data-dir", str(system.root / "bob")
    )
    assert again.returncode == 1
    assert "exists; refusing to overwrite it" in again.stderr
    assert mode(wallet_copy) == 0o600


def test_a_backup_of_a_broken_ledger_fails_its_audit(system: Demo, tmp_path: Path) -> None:
    system.stop("broker")
    with sqlite3.connect(system.broker_dir / "ledger.db") as db:
        db.execute("UPDATE events SET at = at + 1 WHERE seq = 3")
    done = micropay(
        system, "broker", "backup", str(tmp_path / "copy.db"), "--data-dir", str(system.broker_dir)
    )
    assert done.returncode == 1
    assert "result: FAILED at sequence 3: hash-links" in done.stdout
    assert mode(tmp_path / "copy.db") == 0o600
