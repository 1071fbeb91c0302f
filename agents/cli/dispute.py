"""``micropay broker dispute`` and ``micropay audit --evidence``: issuing and checking evidence.

Issuing needs the broker's private key (it signs the bundle) but only reads the ledger,
read-only, so the operator can run it next to a running daemon. Checking needs nothing
but the bundle, ideally the broker's public key, and optionally a copy of the ledger.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agents.daemons.broker_files import BrokerFiles, BrokerSetupError, read_public
from agents.daemons.broker_key_files import load_broker_keys
from agents.runtime.settings import resolve
from broker_ledger.evidence import EvidenceError, issue

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_dispute_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``broker dispute`` sub-command."""
    dispute = sub.add_parser(
        "dispute",
        help="signed evidence of one commitment's redemptions and charges",
        description=(
            "Print (or write) a JSON bundle that anyone can check offline with"
            " `micropay audit --evidence FILE`: the signed commitment, every ledger event"
            " about it with its link hashes, what was charged and billed, the ledger head,"
            " all signed by the broker. Reads the ledger read-only: safe while the daemon runs."
        ),
    )
    dispute.add_argument(
        "commitment", metavar="COMMITMENT", help="the commitment id in hex, or a unique prefix"
    )
    dispute.add_argument(
        "--data-dir",
        "--dir",
        dest="data_dir",
        type=Path,
        metavar="BROKER_DIR",
        help="the broker's data directory (default micropay-broker)",
    )
    dispute.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    dispute.add_argument(
        "--output", type=Path, metavar="FILE", help="write the bundle here instead of stdout"
    )
    dispute.set_defaults(handler=cmd_broker_dispute)


def _write(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def cmd_broker_dispute(args: argparse.Namespace) -> int:
    """Issue the evidence bundle for one commitment."""
    resolve(args, "broker", {"data_dir": Path("micropay-broker")})
    files = BrokerFiles(args.data_dir)
    if not files.key.exists():
        raise BrokerSetupError(f"{args.data_dir} has no broker keys: run `micropay broker init`")
    identity = load_broker_keys(files)
    info = read_public(files.public)
    if info.sign_key != identity.sign_key:
        raise BrokerSetupError(f"{files.public} does not match {files.key}")
    try:
        bundle = issue(files.ledger, identity, info.id, args.commitment, int(time.time() * 1000))
    except EvidenceError as exc:
        sys.stderr.write(f"micropay broker dispute: error: {exc}\n")
        return EXIT_FAILED
    text = json.dumps(bundle, indent=2, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        args.output.write_text(text)
    except OSError as exc:
        sys.stderr.write(f"micropay broker dispute: cannot write {args.output}: {exc.strerror}\n")
        return EXIT_FAILED
    _write(
        {
            "evidence": str(args.output),
            "commitment": bundle["commitment"]["id"],
            "index": bundle["highest"]["index"],
            "charged": bundle["charged"]["total"],
            "events": len(bundle["events"]),
            "ledger_head": bundle["ledger_head"]["seq"],
        }
    )
    return EXIT_OK


def audit_evidence(args: argparse.Namespace) -> int:
    """``micropay audit --evidence FILE``: exit 0 only if every check of the bundle holds."""
    from broker_ledger.evidence_verify import as_dict, as_text, verify_file  # noqa: PLC0415

    problem = _usage_problem(args)
    if problem:
        sys.stderr.write(f"micropay audit: error: {problem}\n")
        return EXIT_USAGE
    ledger: Path | None = args.ledger_copy or args.ledger
    report = verify_file(args.evidence, args.broker_key, ledger)
    output = json.dumps(as_dict(report), indent=2) if args.json else as_text(report)
    sys.stdout.write(f"{output}\n")
    return EXIT_OK if report.ok else EXIT_FAILED


def _usage_problem(args: argparse.Namespace) -> str:
    if args.evidence is None:
        return "--ledger goes with --evidence FILE (to audit a ledger, give it as LEDGER)"
    if args.ledger is not None and args.ledger_copy is not None:
        return "give the ledger copy once: LEDGER or --ledger"
    if args.export_jsonl is not None or args.export_csv is not None:
        return "--export-jsonl and --export-csv go with a ledger audit, not --evidence"
    return ""
