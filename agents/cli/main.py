"""``micropay``: one entry point, a sub-command per job, ``--help`` on each."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.cli.commands import USER_ERRORS, register
from agents.cli.help_format import DefaultsShown
from agents.cli.progress import ProgressBar
from agents.runtime.config_file import ConfigError
from agents.runtime.private_files import restrict_umask
from agents.runtime.settings import bounded

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a tool killed by it reports


def _broker_key(value: str) -> bytes:
    """A 32-byte Ed25519 public key as 64 hex digits, or ``@FILE`` holding them.

    The file may also be the broker's ``broker.pub.json`` (its ``sign_key`` is used).
    """
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text().strip()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {value[1:]}: {exc.strerror}") from exc
        if text.startswith("{"):
            try:
                text = str(json.loads(text)["sign_key"])
            except (ValueError, KeyError, TypeError) as exc:
                raise argparse.ArgumentTypeError(
                    f"{value[1:]} is JSON without a broker sign_key"
                ) from exc
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected 64 hex digits") from exc
    if len(key) != 32:
        raise argparse.ArgumentTypeError("an Ed25519 public key is 32 bytes (64 hex digits)")
    return key


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return path


def cmd_audit(args: argparse.Namespace) -> int:
    """Replay and re-verify a ledger; exit 0 only if everything holds."""
    from broker_ledger.audit import LedgerAudit  # noqa: PLC0415 - keep --help fast
    from broker_ledger.report import as_json, as_text  # noqa: PLC0415

    if args.evidence is not None or args.ledger_copy is not None:
        from agents.cli.dispute import audit_evidence  # noqa: PLC0415

        return audit_evidence(args)
    if args.ledger is None:
        sys.stderr.write("micropay audit: error: give a LEDGER to audit, or --evidence FILE\n")
        return EXIT_USAGE
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = ProgressBar("auditing") if show else None
    collect = None
    if args.html is not None:
        from broker_ledger.report_data import ReportData  # noqa: PLC0415

        collect = ReportData()
    report = LedgerAudit(
        args.ledger,
        args.broker_key,
        workers=args.workers,
        progress=progress,
        collect=collect,
    ).run()
    for witness_file in args.witness or ():
        from broker_ledger import witness  # noqa: PLC0415

        try:
            witness.check_witnesses(
                report, args.ledger, witness.read_lines(witness_file), args.broker_key
            )
        except witness.WitnessFileError as exc:
            sys.stderr.write(f"micropay audit: {exc}\n")
            return EXIT_FAILED
    print(as_json(report) if args.json else as_text(report))  # noqa: T201 - the command's output
    if collect is not None and not _write_html(args.html, report, collect):
        return EXIT_FAILED
    for target, writer_name in ((args.export_jsonl, "write_jsonl"), (args.export_csv, "write_csv")):
        if target is not None:
            _export(args.ledger, target, writer_name, show)
    return EXIT_OK if report.ok else EXIT_FAILED


def _write_html(target: Path, report: Any, collect: Any) -> bool:  # noqa: ANN401
    """Write the audit's HTML page; False (said on stderr) when it cannot be written."""
    from broker_ledger.report_html import as_html  # noqa: PLC0415 - pygal only when asked

    try:
        target.write_text(as_html(report, collect), encoding="utf-8")
    except OSError as exc:
        sys.stderr.write(f"micropay audit: cannot write {target}: {exc.strerror}\n")
        return False
    sys.stderr.write(f"audit report written to {target}\n")
    return True


def _export(ledger: Path, target: Path, writer_name: str, show: bool) -> None:
    from broker_ledger import export  # noqa: PLC0415

    def progress(count: int) -> None:
        sys.stderr.write(f"\r  exported {count:,} events")

    writer: Callable[..., int] = getattr(export, writer_name)
    try:
        with target.open("w", newline="") as out:
            count = writer(ledger, out, progress if show else None)
    except OSError as exc:
        sys.stderr.write(f"micropay audit: cannot write {target}: {exc.strerror}\n")
        return
    sys.stderr.write(f"\rexported {count:,} events to {target}\n")


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo: real processes over a private Mosquitto (or in memory)."""
    if args.payments < 1:
        sys.stderr.write("micropay demo: error: --payments must be at least 1\n")
        return EXIT_USAGE
    if args.in_memory and args.keys != "file":
        sys.stderr.write(
            "micropay demo: error: --keys pkcs11 runs real processes, not --in-memory\n"
        )
        return EXIT_USAGE
    if args.in_memory:
        from agents.demo import in_memory  # noqa: PLC0415

        return in_memory.main(
            [
                *("--payments", str(args.payments), "--seed", str(args.seed)),
                *("--scheme", args.scheme),
            ]
        )
    from agents.demo.processes import run_demo  # noqa: PLC0415

    return run_demo(args.payments, args.data_dir, args.keys, args.scheme)


class StrictParser(argparse.ArgumentParser):
    """No abbreviated options: ``--token`` must not quietly mean ``--token-file``.

    Sub-command parsers are of the same class, so the rule holds on every level.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - argparse's own
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", DefaultsShown)
        super().__init__(*args, **kwargs)


def installed_version() -> str:
    """The installed package's version, as ``pip`` and ``uv`` know it."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415 - --version only

    try:
        return version("micropay")
    except PackageNotFoundError:
        return "unknown (not installed)"


class VersionAction(argparse.Action):
    """``--version``: looked up only when asked for, so every other command starts as fast."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:  # noqa: ANN401 - argparse's own
        kwargs.setdefault("help", "print the version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        """Print ``micropay VERSION`` and exit 0."""
        del namespace, values, option_string
        sys.stdout.write(f"{parser.prog} {installed_version()}\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The full command tree."""
    parser = StrictParser(
        prog="micropay",
        description="PayWord micropayments between buyers, vendors and a broker over MQTT.",
    )
    parser.add_argument("--version", action=VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    audit = commands.add_parser(
        "audit",
        help="re-verify a broker ledger from its events",
        description=(
            "Replay every event of a ledger: hash links, checkpoint signatures, certificate"
            " and commitment signatures, every redemption's payword chain, billing, and the"
            " stored balances and invoices. Exit 0 only when everything holds; otherwise"
            " exit 1 and name the first bad sequence number. With --evidence FILE, check a"
            " dispute evidence bundle instead (and, given a ledger copy, that its events are"
            " in that ledger's hash chain)."
        ),
    )
    audit.add_argument(
        "ledger",
        nargs="?",
        type=_existing_file,
        help="the ledger's SQLite file (with --evidence: a copy to find the bundle's events in)",
    )
    audit.add_argument(
        "--evidence",
        type=_existing_file,
        metavar="FILE",
        help="check a dispute evidence bundle (from `micropay broker dispute`) instead",
    )
    audit.add_argument(
        "--ledger",
        dest="ledger_copy",
        type=_existing_file,
        metavar="LEDGER",
        help="with --evidence: a copy of the ledger the bundle's events must be in",
    )
    audit.add_argument(
        "--broker-key",
        type=_broker_key,
        metavar="HEX|@FILE",
        help="the broker's Ed25519 public key to trust (default: the one stored in the ledger)",
    )
    audit.add_argument(
        "--witness",
        action="append",
        type=_existing_file,
        metavar="FILE",
        help=(
            "signed ledger heads an agent kept (from `micropay witness`): the ledger must"
            " agree with every one (repeatable)"
        ),
    )
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.add_argument(
        "--workers",
        type=int,
        default=2,
        help="threads verifying signatures (default 2)",
    )
    audit.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )
    audit.add_argument(
        "--export-jsonl", type=Path, metavar="FILE", help="also write events as JSONL"
    )
    audit.add_argument("--export-csv", type=Path, metavar="FILE", help="also write events as CSV")
    audit.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="also write the report as one self-contained HTML page with charts",
    )
    audit.set_defaults(handler=cmd_audit)

    demo = commands.add_parser(
        "demo",
        help="run broker, 2 vendors and 3 buyers on a private Mosquitto and print the totals",
        description=(
            "Start Mosquitto from the project's mosquitto.conf on a free port, a broker, two"
            " vendors and three buyers as separate processes; make the payments; redeem;"
            " close the billing period; audit the ledger; print a summary; stop everything."
            " Exit 0 only if the audit passes and the totals balance."
        ),
    )
    demo.add_argument(
        "--payments", type=bounded("payments"), default=10_000, help="payments (default 10000)"
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="keep everything written (ledger, wallets, stores, logs, Mosquitto config) here",
    )
    demo.add_argument(
        "--in-memory", action="store_true", help="run the protocol cores in one process instead"
    )
    demo.add_argument("--seed", type=int, default=1, help="seed of the in-memory payment mix")
    demo.add_argument(
        "--scheme",
        choices=["payword", "scrip", "mixed"],
        default="payword",
        help="how the buyers pay: PayWord chains, Millicent scrip, or both side by side (one"
        " vendor checking each scrip serial with the broker); see docs/SCHEMES.md §1",
    )
    demo.add_argument(
        "--keys",
        choices=["file", "pkcs11"],
        default="file",
        help="where every agent's keys live: key files, or one SoftHSM2 token per agent",
    )
    demo.set_defaults(handler=cmd_demo)
    witness = commands.add_parser(
        "witness",
        help="export the signed ledger heads an agent kept, for `micropay audit --witness`",
        description=(
            "The broker publishes its signed ledger head; every vendor and buyer keeps what"
            " it received. Print them as JSON lines (or write them to --output) so that an"
            " auditor can check the broker's ledger was not rewritten after it signed them."
        ),
    )
    witness.add_argument(
        "data_dir", type=Path, metavar="DATA_DIR", help="a vendor's or buyer's data directory"
    )
    witness.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    witness.set_defaults(handler=cmd_witness)
    register(commands)
    return parser


def cmd_witness(args: argparse.Namespace) -> int:
    """Export an agent's witnessed ledger heads as JSON lines."""
    from broker_ledger import witness  # noqa: PLC0415

    stores = [args.data_dir / name for name in ("store.db", "wallet.db")]
    store = next((path for path in stores if path.is_file()), None)
    if store is None:
        sys.stderr.write(
            f"micropay witness: no agent store (store.db, wallet.db) in {args.data_dir}\n"
        )
        return EXIT_FAILED
    try:
        heads = witness.read_store(store)
    except witness.WitnessFileError as exc:
        sys.stderr.write(f"micropay witness: {exc}\n")
        return EXIT_FAILED
    if args.output is None:
        witness.write_lines(heads, sys.stdout)
    else:
        with args.output.open("w") as out:
            witness.write_lines(heads, out)
        sys.stderr.write(f"{len(heads)} signed ledger heads written to {args.output}\n")
    for alarm in (head for head in heads if head.verdict):
        what = {
            "contradiction": "a second, different hash for a seq it had already signed",
            "regression": "a lower head after a higher one: its ledger went backwards",
        }.get(alarm.verdict, alarm.verdict)
        sys.stderr.write(f"ALARM: the broker signed head {alarm.seq}: {what}\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command."""
    restrict_umask()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        sys.stderr.write(f"micropay: error: {error}\n")
        return EXIT_USAGE
    except USER_ERRORS as error:
        sys.stderr.write(f"micropay: error: {error}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`micropay ... | head`): stop quietly, as `cat` would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
