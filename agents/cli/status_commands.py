"""``micropay broker status`` and ``micropay vendor status``: tables to read, JSON for scripts.

The broker answers through its admin socket while it runs (or from its ledger when it
does not); the vendor's store is read read-only beside the running daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any, Final

import msgspec

from agents.cli.options import CommandError, add_common, prepare, print_json
from agents.cli.tables import columns, labelled, when
from agents.daemons.broker_files import BrokerFiles, read_public
from agents.daemons.operator_client import ask
from agents.daemons.operator_protocol import BrokerStatus, Refused, Status
from agents.daemons.store_status import StoreReadError, VendorStatus, read_vendor_status
from agents.daemons.vendor_agent import STORE_FILE
from agents.runtime.datadir_lock import lock_holder
from agents.runtime.settings import require
from protocol.wording import counted

NAMES_SHOWN: Final = 20


def party_dir(args: argparse.Namespace) -> Path:
    """A vendor's or buyer's data directory: ``--data-dir``, else ``micropay-NAME``."""
    if args.data_dir is not None:
        return Path(args.data_dir)
    require(args, "name")
    return Path(f"micropay-{args.name}")


def cmd_broker_status(args: argparse.Namespace) -> int:
    """Accounts, commitments and totals, from the daemon or the ledger."""
    prepare(args, "broker", {"data_dir": Path("micropay-broker")})
    answer, live = asyncio.run(ask(args.data_dir, Status()))
    if isinstance(answer, Refused):
        raise CommandError(answer.error)
    if args.json:
        status = msgspec.to_builtins(answer)
        status.pop("ok", None)
        print_json(status)
    else:
        sys.stdout.write(broker_table(BrokerFiles(args.data_dir), answer, live=live) + "\n")
    return 0


def broker_table(files: BrokerFiles, status: BrokerStatus, *, live: bool) -> str:
    """The broker's status as labelled lines."""
    pid, _ = lock_holder(files.directory)
    daemon = (
        f"running (pid {pid if pid is not None else '?'}), answered on {files.admin}"
        if live
        else "not running: read from the ledger"
    )
    names = ", ".join(status.enrolled[:NAMES_SHOWN]) or "-"
    if len(status.enrolled) > NAMES_SHOWN:
        names += f" and {len(status.enrolled) - NAMES_SHOWN:,} more (--json lists them)"
    accounts = (
        f"{status.accounts:,}: {counted(status.buyers, 'buyer', grouped=True)},"
        f" {counted(status.vendors, 'vendor', grouped=True)};"
        f" {len(status.enrolled):,} enrolled, {status.revoked:,} revoked"
    )
    return labelled(
        [
            ("broker", f"{read_public(files.public).id} ({files.directory})"),
            ("daemon", daemon),
            ("ledger head", f"seq {status.ledger_head:,}, hash {status.ledger_head_hash or '?'}"),
            ("accounts", accounts),
            ("commitments", status.commitments),
            ("debited", f"{status.debited:,} (minor units)"),
            ("credited", status.credited),
            ("reserved", status.reserved),
            ("enrolled", names),
        ]
    )


def cmd_vendor_status(args: argparse.Namespace) -> int:
    """What the vendor holds, what the broker has redeemed, and what awaits redemption."""
    prepare(args, "vendor", {"data_dir": None, "name": None})
    try:
        status = read_vendor_status(party_dir(args) / STORE_FILE)
    except StoreReadError as exc:
        raise CommandError(str(exc)) from exc
    if args.json:
        print_json(dataclasses.asdict(status))
    else:
        sys.stdout.write(vendor_table(status) + "\n")
    return 0


def vendor_table(status: VendorStatus) -> str:
    """The vendor's status as labelled lines, then one row per buyer."""
    who = (
        f"{status.account} (certificate serial {status.certificate_serial})"
        if status.account
        else "not enrolled yet"
    )
    receipt = (
        f"ledger head seq {status.last_receipt_seq:,} at {when(status.last_receipt_at)}"
        if status.last_receipt_seq
        else "none yet"
    )
    rows: list[tuple[str, Any]] = [
        ("vendor", who),
        ("store", status.store),
        ("chains", status.chains),
        ("units held", status.units_held),
        ("units redeemed", status.units_redeemed),
        ("awaiting redemption", counted(status.units_awaiting, "unit", grouped=True)),
        ("amount held", f"{status.amount_held:,} (minor units)"),
        ("amount redeemed", status.amount_redeemed),
        ("amount awaiting", status.amount_awaiting),
        ("last receipt", receipt),
        ("latest head seen", f"seq {status.latest_head_seq:,}"),
    ]
    if status.scrip_serials or status.scrip_refused:
        rows.append(("scrip serials", status.scrip_serials))
        rows.append(("scrip awaiting deposit", status.scrip_awaiting_deposit))
    if status.scrip_refused:
        refused = counted(len(status.scrip_refused), "scrip deposit", grouped=True)
        rows.append(("REFUSED", f"{refused} refused by the broker for good (kept, not resent)"))
        rows.extend(
            (
                f"  scrip {r.serial}/{r.generation}",
                f"{r.buyer}, price {r.price:,}, at {when(r.at)}: {r.reason}",
            )
            for r in status.scrip_refused
        )
    if status.contradictions:
        alarm = f"{status.contradictions:,} broker statements contradict a head it kept"
        rows.append(("ALARM", f"{alarm}: see `micropay witness`"))
    text = labelled(rows)
    if status.buyers:
        text += "\n\n" + columns(
            ("buyer", "chains", "held", "redeemed", "awaiting", "amount awaiting"),
            [
                (
                    b.buyer,
                    b.chains,
                    b.units_held,
                    b.units_redeemed,
                    b.units_awaiting,
                    b.amount_awaiting,
                )
                for b in status.buyers
            ],
        )
    return text


def add_broker_status(sub: argparse._SubParsersAction[Any]) -> None:
    """The ``broker status`` sub-command."""
    status = sub.add_parser(
        "status",
        help="accounts, commitments, totals and the ledger head",
        description=(
            "Ask the running broker through its admin socket (or read the ledger when no"
            " daemon runs) and print a table; --json prints the same as JSON for scripts."
        ),
    )
    add_common(status, mqtt=False)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=cmd_broker_status)


def add_vendor_status(sub: argparse._SubParsersAction[Any]) -> None:
    """The ``vendor status`` sub-command."""
    status = sub.add_parser(
        "status",
        help="chains, units held, redeemed and awaiting redemption, the last receipt",
        description=(
            "Read the vendor's store (read-only: safe while the vendor runs) and print its"
            " chains, the paywords held, what the broker has redeemed, what awaits"
            " redemption and the ledger head of the broker's last receipt."
        ),
    )
    add_common(status, mqtt=False)
    status.add_argument("--name", help="the vendor's account name (its data directory)")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=cmd_vendor_status)
