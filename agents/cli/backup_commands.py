"""``micropay broker|vendor|buyer backup DEST``: a consistent copy, checked before it counts.

Each command copies its agent's SQLite file with the online backup API (safe while the
daemon runs), then checks the copy: SQLite's integrity check for every file, and for
the broker's ledger the full audit against the key in ``broker.pub.json``. The exit
status is 0 only if the copy holds up.
"""

from __future__ import annotations

import argparse
import stat
import sys
from pathlib import Path
from typing import Any

from agents.cli.options import CommandError, add_common, prepare
from agents.cli.status_commands import party_dir, vendor_table
from agents.cli.tables import labelled
from agents.daemons import buyer_agent, vendor_agent
from agents.daemons.broker_files import BrokerFiles, read_public
from agents.daemons.store_status import StoreReadError, read_vendor_status, read_wallet_status
from agents.runtime.sqlite_backup import BackupError, BackupResult, backup_file, destination


def _backup(source: Path, given: str) -> BackupResult:
    try:
        return backup_file(source, destination(given, source.name))
    except BackupError as exc:
        raise CommandError(str(exc)) from exc


def _copied(source: Path, result: BackupResult) -> str:
    mode = stat.S_IMODE(result.path.stat().st_mode)
    return labelled(
        [
            ("backup", f"{result.path} (mode {mode:04o}, {result.size:,} bytes)"),
            ("of", source),
            ("integrity", result.integrity),
        ]
    )


def cmd_broker_backup(args: argparse.Namespace) -> int:
    """Copy the ledger while the broker runs, then audit the copy."""
    from broker_ledger.audit import LedgerAudit  # noqa: PLC0415 - keep --help fast
    from broker_ledger.report import as_text  # noqa: PLC0415

    prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    files = BrokerFiles(args.data_dir)
    trusted = read_public(files.public).sign_key
    result = _backup(files.ledger, args.dest)
    report = LedgerAudit(result.path, trusted).run()
    sys.stdout.write(f"{_copied(files.ledger, result)}\n\n{as_text(report)}\n")
    return 0 if result.intact and report.ok else 1


def cmd_vendor_backup(args: argparse.Namespace) -> int:
    """Copy the vendor's store while it runs, check it and sum it up."""
    prepare(args, "vendor", {"data_dir": None, "name": None})
    source = party_dir(args) / vendor_agent.STORE_FILE
    result = _backup(source, args.dest)
    try:
        summary = vendor_table(read_vendor_status(result.path))
    except StoreReadError as exc:
        raise CommandError(f"the copy does not read back: {exc}") from exc
    sys.stdout.write(f"{_copied(source, result)}\n\n{summary}\n")
    return 0 if result.intact else 1


def cmd_buyer_backup(args: argparse.Namespace) -> int:
    """Copy the buyer's wallet (its chain seeds: its money), check it and sum it up."""
    prepare(args, "buyer", {"data_dir": None, "name": None})
    source = party_dir(args) / buyer_agent.STORE_FILE
    result = _backup(source, args.dest)
    try:
        wallet = read_wallet_status(result.path)
    except StoreReadError as exc:
        raise CommandError(f"the copy does not read back: {exc}") from exc
    who = wallet.account or "not enrolled yet"
    summary = labelled(
        [
            ("buyer", who),
            ("channels", wallet.channels),
            ("paywords spent", f"{wallet.paywords_spent:,} of {wallet.paywords_total:,}"),
            ("latest head seen", f"seq {wallet.latest_head_seq:,}"),
        ]
    )
    sys.stdout.write(f"{_copied(source, result)}\n\n{summary}\n")
    return 0 if result.intact else 1


HANDLERS = {"broker": cmd_broker_backup, "vendor": cmd_vendor_backup, "buyer": cmd_buyer_backup}
FILES = {"broker": "ledger", "vendor": "store", "buyer": "wallet"}


def add_backup_parser(sub: argparse._SubParsersAction[Any], role: str) -> None:
    """The ``backup`` sub-command of ``broker``, ``vendor`` or ``buyer``."""
    what = FILES[role]
    backup = sub.add_parser(
        "backup",
        help=f"a consistent copy of the {what}, safe while the daemon runs, then checked",
        description=(
            f"Copy the {what} with SQLite's online backup API: a snapshot as of one commit,"
            " taken while the daemon runs. DEST is a new file, or a directory (created"
            f" 0700) that receives {what}-<UTC time>.db; the copy is written 0600 and never"
            " over an existing file. The copy is then checked"
            + (" and audited" if role == "broker" else "")
            + "; exit 1 if it does not hold up."
        ),
    )
    add_common(backup, mqtt=False)
    backup.add_argument("dest", metavar="DEST", help="a new file, or a directory")
    if role != "broker":
        backup.add_argument("--name", help=f"the {role}'s account name (its data directory)")
    backup.set_defaults(handler=HANDLERS[role])
