"""``micropay demo``: the whole system as separate processes on a private Mosquitto.

Starts Mosquitto from the project's ``mosquitto.conf`` on a free port, a broker daemon,
two vendor daemons and three buyers (each its own process), makes the payments, has the
vendors redeem as they shut down, closes the billing period, audits the ledger, prints a
summary and stops everything it started. Exit 0 only if the audit passes and the totals
balance.

``--scheme`` picks how the buyers pay: PayWord chains (the default), Millicent scrip at
both vendors, or a mix that shows both side by side, one vendor checking each scrip
serial with the broker before it serves (docs/SCHEMES.md §1).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from agents.daemons.broker_files import init_broker
from agents.daemons.operator_client import operator_request
from agents.daemons.operator_protocol import (
    Asks,
    ClosePeriod,
    GrantedT,
    OpenAccount,
    Refused,
    Status,
)
from agents.demo.schemes import MINT_VALUE, SCRIP_VENDORS, Scheme, how, paid_by, pay_by, takes
from agents.ops import softhsm
from agents.ops.mosquitto import MosquittoProcess, add_user, free_port, generated_password, render
from agents.runtime.private_files import make_private_dir, open_private, write_private
from broker_ledger import witness
from broker_ledger.audit import LedgerAudit
from broker_ledger.report_data import ReportData
from broker_ledger.report_html import as_html

VENDORS: Final = {"news-stand": (1, 50, "article=5"), "charger-7": (2, 200, "kWh=30")}
BUYERS: Final = ("alice", "bob", "carol")
KeyBackend = Literal["file", "pkcs11"]
SCRIP_FLAGS: Final = {"off-line": ("--scrip",), "on-line": ("--scrip-online",)}


def item_of(vendor: str) -> tuple[str, int]:
    """The vendor's one item and its price, which a scrip payment pays exactly."""
    name, price = VENDORS[vendor][2].split("=")
    return name, int(price)


def say(text: str) -> None:
    """A progress line on stderr."""
    sys.stderr.write(f"[demo] {text}\n")
    sys.stderr.flush()


@dataclass
class Demo:
    """Everything the demo started, so that it can all be stopped."""

    root: Path
    payments: int
    keys: KeyBackend = "file"
    scheme: Scheme = "payword"
    port: int = field(default_factory=free_port)
    passwords: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    mosquitto: MosquittoProcess | None = None
    paid: dict[tuple[str, str], int] = field(default_factory=dict)
    count: dict[tuple[str, str], int] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)
    minted: dict[tuple[str, str], int] = field(default_factory=dict)
    held: dict[tuple[str, str], int] = field(default_factory=dict)
    softhsm_config: Path | None = None

    def metrics_url(self, name: str) -> str:
        """Where daemon ``name`` serves its Prometheus metrics."""
        return f"http://127.0.0.1:{self.metrics[name]}/metrics"

    def metrics_port(self, name: str) -> tuple[str, str]:
        """The ``--metrics-port`` option giving daemon ``name`` a free port of its own."""
        self.metrics[name] = free_port()
        return "--metrics-port", str(self.metrics[name])

    @property
    def broker_dir(self) -> Path:
        """The broker's data directory."""
        return self.root / "broker"

    def env(self, name: str, token: str | None = None) -> dict[str, str]:
        """The environment of an agent process: its secrets travel here, never in argv."""
        env = {
            **os.environ,
            "MICROPAY_MQTT_PORT": str(self.port),
            "MICROPAY_MQTT_PASSWORD": self.passwords[name],
            "MICROPAY_LOG_LEVEL": "info",
        }
        if token is not None:
            env["MICROPAY_TOKEN"] = token
        if self.softhsm_config is not None:
            env[softhsm.CONFIG_ENV] = str(self.softhsm_config)
        return env

    def command(self, *arguments: str) -> list[str]:
        """A ``micropay`` command line run by this interpreter."""
        return [sys.executable, "-m", "agents.cli.main", *arguments]

    def spawn(
        self, name: str, *arguments: str, token: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a daemon whose output goes to ``logs/<name>.log``."""
        with open_private(self.root / "logs" / f"{name}.log", append=True) as log:
            process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self.command(*arguments), env=self.env(name, token), stdout=log, stderr=log
            )
        self.processes[name] = process
        return process

    def run(self, name: str, *arguments: str, token: str | None = None) -> dict[str, Any]:
        """Run a short command as ``name`` and return its JSON output."""
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            self.command(*arguments), env=self.env(name, token), capture_output=True, check=False
        )
        with open_private(self.root / "logs" / f"{name}.log", append=True) as log:
            log.write(done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {' '.join(arguments[:2])} failed: {done.stderr[-500:]!r}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def run_quietly(self, name: str, *arguments: str) -> None:
        """Run a short command as ``name`` before it has an MQTT password (``keys init``)."""
        env = {**os.environ, "MICROPAY_LOG_LEVEL": "info"}
        if self.softhsm_config is not None:
            env[softhsm.CONFIG_ENV] = str(self.softhsm_config)
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            self.command(*arguments), env=env, capture_output=True, check=False
        )
        with open_private(self.root / "logs" / f"{name}.log", append=True) as log:
            log.write(done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {' '.join(arguments[:2])} failed: {done.stderr[-500:]!r}")

    def stop(self, name: str, timeout: float = 30.0) -> None:
        """SIGTERM a daemon and wait for it to finish its shutdown work."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop within {timeout} s; killing it")
            process.kill()
            process.wait()

    def stop_all(self) -> None:
        """Stop whatever is still running, the last started first, Mosquitto last.

        Vendors stop before the broker they redeem at, so their shutdown redemption is
        answered instead of waiting out its timeout.
        """
        for name in reversed(list(self.processes)):
            self.stop(name, timeout=10)
        if self.mosquitto is not None:
            self.mosquitto.stop()


def _operator(demo: Demo, request: Asks[GrantedT]) -> GrantedT:
    answer = asyncio.run(operator_request(demo.broker_dir, request))
    if isinstance(answer, Refused):
        raise RuntimeError(  # noqa: TRY004 - a refusal, which run_demo reports
            f"broker refused {request.command}: {answer.error}"
        )
    return answer


def _wait_enrolled(demo: Demo, names: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        enrolled = set(_operator(demo, Status()).enrolled)
        if set(names) <= enrolled:
            return
        for name, process in demo.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited early: see logs/{name}.log")
        time.sleep(0.1)
    raise RuntimeError(f"{names} did not enroll within {timeout} s")


def start(demo: Demo) -> None:
    """Mosquitto, the broker daemon, the accounts, the vendor daemons, the buyers' wallets."""
    make_private_dir(demo.root / "logs")
    files = render(demo.root / "mosquitto", demo.port)
    for name in ("broker", *VENDORS, *BUYERS):
        demo.passwords[name] = generated_password()
        add_user(files, name, demo.passwords[name])
    demo.mosquitto = MosquittoProcess(files, demo.port, demo.root / "logs" / "mosquitto.log")
    demo.mosquitto.start()
    say(f"mosquitto listening on 127.0.0.1:{demo.port} (config {files.config})")
    if demo.keys == "pkcs11":
        keys_in_tokens(demo)
    asyncio.run(init_broker(demo.broker_dir, "broker"))
    demo.spawn(
        "broker",
        *("broker", "run", "--data-dir", str(demo.broker_dir), "--witness-interval", "1"),
        *demo.metrics_port("broker"),
    )
    say(f"broker daemon started (metrics at {demo.metrics_url('broker')})")
    deadline = time.monotonic() + 20
    while not (demo.broker_dir / "admin.sock").exists():
        if time.monotonic() > deadline or demo.processes["broker"].poll() is not None:
            raise RuntimeError("the broker did not start: see logs/broker.log")
        time.sleep(0.05)
    pub = str(demo.broker_dir / "broker.pub.json")
    for name, (unit_value, max_jump, item) in VENDORS.items():
        opened = _operator(demo, OpenAccount(account=name, role="vendor", credit_limit=0))
        demo.tokens[name] = opened.token
        demo.spawn(
            name,
            *("vendor", "run", "--name", name, "--broker-pub", pub),
            *("--data-dir", str(demo.root / name)),
            *("--unit-value", str(unit_value), "--max-jump", str(max_jump), "--item", item),
            *demo.metrics_port(name),
            *_scrip_flags(demo.scheme, name),
            token=opened.token,
        )
    _wait_enrolled(demo, list(VENDORS))
    if demo.scheme == "payword":
        say(f"vendors {', '.join(VENDORS)} enrolled and offering")
    else:
        offers = "; ".join(f"{name}: {takes(demo.scheme, name)}" for name in VENDORS)
        say(f"vendors {', '.join(VENDORS)} enrolled and offering ({offers})")
    for name in BUYERS:
        opened = _operator(demo, OpenAccount(account=name, role="buyer", credit_limit=10**9))
        demo.tokens[name] = opened.token
        demo.run(
            name,
            *("buyer", "enroll", "--name", name, "--broker-pub", pub),
            *("--data-dir", str(demo.root / name)),
            token=opened.token,
        )
    say(f"buyers {', '.join(BUYERS)} enrolled")


def _scrip_flags(scheme: Scheme, vendor: str) -> tuple[str, ...]:
    """The ``vendor run`` options that make ``vendor`` take scrip under ``scheme``."""
    check = SCRIP_VENDORS[scheme].get(vendor)
    return () if check is None else SCRIP_FLAGS[check]


def keys_in_tokens(demo: Demo) -> None:
    """One SoftHSM2 token per agent, its keys generated inside it, its PIN in a 0600 file."""
    demo.softhsm_config = softhsm.write_config(demo.root / "softhsm")
    os.environ[softhsm.CONFIG_ENV] = str(demo.softhsm_config)  # `broker init` runs in here
    module = str(softhsm.module_path())
    pins = make_private_dir(demo.root / "pins")
    roles = {
        "broker": "broker",
        **dict.fromkeys(VENDORS, "vendor"),
        **dict.fromkeys(BUYERS, "buyer"),
    }
    for name, role in roles.items():
        pin = generated_password()
        softhsm.init_token(demo.softhsm_config, name, generated_password(), pin)
        write_private(pins / name, pin + "\n")
        directory = demo.broker_dir if role == "broker" else demo.root / name
        demo.run_quietly(
            name,
            *("keys", "init", "--role", role, "--data-dir", str(directory)),
            *("--backend", "pkcs11", "--pkcs11-module", module, "--token-label", name),
            *("--key-label", name, "--pin-file", str(pins / name)),
        )
    say(f"keys generated inside {len(roles)} SoftHSM2 tokens, one per agent ({module})")


def pay(demo: Demo) -> float:
    """Every buyer pays every vendor, buyers in parallel; returns the seconds it took."""
    pairs = [(b, v) for b in BUYERS for v in VENDORS]
    share = {pair: demo.payments // len(pairs) for pair in pairs}
    for pair in pairs[: demo.payments % len(pairs)]:
        share[pair] += 1
    started = time.monotonic()
    scripts = [(buyer, _steps(demo, buyer, share)) for buyer in BUYERS]
    running = []
    for buyer, steps in scripts:
        with (
            open_private(demo.root / "logs" / f"{buyer}-pay.json") as out,
            open_private(demo.root / "logs" / f"{buyer}.log", append=True) as err,
        ):
            process = subprocess.Popen(  # noqa: S603 - a shell line built from our own command
                ["/bin/sh", "-ec", " && ".join(steps) or "true"],
                env=demo.env(buyer),
                stdout=out,
                stderr=err,
            )
        running.append((buyer, process))
    paying = f"{len(BUYERS)} buyers paying {len(VENDORS)} vendors"
    if demo.scheme != "payword":
        paying += f" ({how(demo.scheme)})"
    say(f"{demo.payments:,} payments: {paying} ...")
    for buyer, process in running:
        if process.wait() != 0:
            raise RuntimeError(f"{buyer} failed to pay: see logs/{buyer}.log")
    seconds = time.monotonic() - started
    for buyer in BUYERS:
        text = (demo.root / "logs" / f"{buyer}-pay.json").read_text()
        for answer in _json_objects(text):
            for chunk in answer if isinstance(answer, list) else [answer]:
                _count(demo, buyer, chunk)
    return seconds


def _steps(demo: Demo, buyer: str, share: dict[tuple[str, str], int]) -> list[str]:
    """The shell commands one buyer runs, one after the other, to pay its share."""
    pub = str(demo.broker_dir / "broker.pub.json")
    me = (*("--name", buyer, "--broker-pub", pub), *("--data-dir", str(demo.root / buyer)))
    chains = [v for v in VENDORS if pay_by(demo.scheme, buyer, v) == "payword"]
    # One process pays its PayWord vendors side by side; a vendor's extra payment (when
    # the payments do not split evenly) follows in a second command.
    mine = {vendor: share[buyer, vendor] for vendor in chains}
    common = min(mine.values(), default=0)
    rounds = [([v for v in chains if mine[v]], common)] if common else []
    rounds += [([v], mine[v] - common) for v in chains if mine[v] > common]
    steps = [
        " ".join(
            [
                *demo.command("buyer", "pay", *vendors, *me),
                *("--payments", str(payments), "--units", "10", "--mixed"),
            ]
        )
        for vendors, payments in rounds
    ]
    # Scrip is paid one payment at a time (each answer carries the change the next spends).
    for vendor in VENDORS:
        if vendor not in chains and share[buyer, vendor]:
            item, _ = item_of(vendor)
            command = demo.command("buyer", "pay", vendor, *me, "--scheme", "scrip")
            command += ["--item-name", item, "--payments", str(share[buyer, vendor])]
            steps.append(" ".join([*command, "--mint-value", str(MINT_VALUE)]))
    return steps


def _count(demo: Demo, buyer: str, chunk: dict[str, Any]) -> None:
    """Add one vendor's answer from ``buyer pay`` to the demo's tally."""
    pair = (buyer, chunk["vendor"])
    demo.count[pair] = demo.count.get(pair, 0) + chunk["payments"]
    if chunk.get("scheme") == "scrip":
        demo.paid[pair] = demo.paid.get(pair, 0) + chunk["paid"]
        demo.minted[pair] = demo.minted.get(pair, 0) + chunk["minted"]
        demo.held[pair] = chunk["scrip_held"]  # what the wallet holds after the last command
        return
    demo.paid[pair] = demo.paid.get(pair, 0) + chunk["units"] * VENDORS[chunk["vendor"]][0]


def _json_objects(text: str) -> Iterator[Any]:
    """Each JSON value in ``text`` (``buyer pay`` prints one per command it ran)."""
    decoder = json.JSONDecoder()
    position = 0
    while position < len(text):
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        value, position = decoder.raw_decode(text, position)
        yield value


def finish(demo: Demo) -> tuple[dict[str, Any], Any]:
    """Vendors redeem as they stop, the period closes, the broker stops, the ledger is audited."""
    for name in VENDORS:
        demo.stop(name)
    say("vendors stopped (they redeem what they hold on the way out)")
    closed = _operator(demo, ClosePeriod(period=time.strftime("%Y-%m"), fee_basis_points=100))
    status = _operator(demo, Status())
    demo.stop("broker")
    say("billing period closed, broker stopped; auditing the ledger ...")
    ledger = demo.broker_dir / "ledger.db"
    charts = ReportData()
    report = LedgerAudit(ledger, collect=charts).run()
    stores = [demo.root / name / "store.db" for name in VENDORS]
    stores += [demo.root / name / "wallet.db" for name in BUYERS]
    heads = [head for store in stores if store.is_file() for head in witness.read_store(store)]
    witnessed = witness.check_witnesses(report, ledger, heads, None)
    write_private(demo.root / "report.html", as_html(report, charts))
    with contextlib.closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)) as db:
        (last_money,) = db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM events"
            " WHERE type IN ('paywords-redeemed', 'scrip-deposited')"
        ).fetchone()
    covered = max((head.seq for head in heads if not head.verdict), default=0)
    return {
        **msgspec.to_builtins(closed.summary),
        "status": msgspec.to_builtins(status),
        "witnessed": witnessed,
        "witnessed_through": covered,
        "last_money_event": int(last_money),
    }, report


def summarize(demo: Demo, summary: dict[str, Any], report: Any, seconds: float) -> bool:  # noqa: ANN401
    """Print the table; whether everything balances and the audit passed."""
    out = sys.stdout.write
    total_payments = sum(demo.count.values())
    out(f"\n{total_payments:,} payments in {seconds:.2f} s ")
    out(f"({total_payments / seconds:,.0f}/s over MQTT, buyers in parallel)\n\n")
    scrip = demo.scheme != "payword"
    out(f"{'buyer':<8}{'vendor':<13}{'payments':>10}{'paid':>10}")
    out(f"{'minted':>8}{'held':>8}  paid by\n" if scrip else "\n")
    for (buyer, vendor), amount in sorted(demo.paid.items()):
        out(f"{buyer:<8}{vendor:<13}{demo.count[buyer, vendor]:>10,}{amount:>10,}")
        if not scrip:
            out("\n")
        elif (buyer, vendor) in demo.minted:
            minted, held = demo.minted[buyer, vendor], demo.held[buyer, vendor]
            out(f"{minted:>8,}{held:>8,}  {paid_by(demo.scheme, vendor)}\n")
        else:
            out(f"{'':>16}  PayWord\n")
    paid = sum(demo.paid.values())
    out(f"\n{'billing period':<21}{summary['period']:>20}\n")
    out(f"{'buyers paid':<21}{paid:>20,}\n")
    out(f"{'invoiced (debited)':<21}{summary['debited']:>20,}\n")
    out(f"{'vendors credited':<21}{summary['credited']:>20,}\n")
    out(f"{'broker fee (1%)':<21}{summary['fees']:>20,}\n")
    out(f"{'audit':<21}{('PASSED' if report.ok else 'FAILED'):>20}")
    out(f"  ({report.events:,} events, {report.signatures_verified:,} signatures,")
    out(f" {summary['witnessed']} signed heads the agents kept)\n")
    covered = summary["witnessed_through"] >= summary["last_money_event"]
    out(f"{'witnessed':<21}{('COVERED' if covered else 'NOT COVERED'):>20}")
    out(f"  (the agents hold heads through seq {summary['witnessed_through']};")
    last = "redemption" if demo.scheme == "payword" else "redemption or deposit"
    out(f" the last {last} is seq {summary['last_money_event']})\n")
    balanced = paid == summary["debited"] == summary["credited"] + summary["fees"]
    if scrip:
        balanced = _scrip_lines(demo, report) and balanced
    ok = bool(report.ok) and balanced and covered
    out("\nmetrics served during the run (Prometheus text format):\n")
    for name in demo.metrics:
        out(f"  {name:<19}{demo.metrics_url(name)}\n")
    out(f"\nresult: {'BALANCED' if ok else 'NOT BALANCED'}\n")
    if not report.ok and report.first_failure is not None:
        out(f"first audit failure: {report.first_failure}\n")
    return ok


def _scrip_lines(demo: Demo, report: Any) -> bool:  # noqa: ANN401 - an AuditReport
    """The audit's four scrip totals; whether they add up and agree with the buyers' own.

    Scrip is debited when deposited, not when minted (docs/SCHEMES.md 3.6): what the
    buyers spent is what the vendors were credited, and the rest stays reserved until the
    scrip's deadline returns it.
    """
    out = sys.stdout.write
    minted, credited = report.scrip_minted, report.scrip_credited
    returned, outstanding = report.scrip_returned, report.scrip_outstanding
    spent = sum(demo.paid[pair] for pair in demo.minted)
    out(f"{'scrip minted':<21}{minted:>20,}  (buyers bought {sum(demo.minted.values()):,})\n")
    out(f"{'scrip credited':<21}{credited:>20,}  (buyers spent {spent:,})\n")
    out(f"{'scrip returned':<21}{returned:>20,}  (released at deadlines)\n")
    out(f"{'scrip outstanding':<21}{outstanding:>20,}  (buyers hold {sum(demo.held.values()):,})\n")
    conserved = minted == credited + returned + outstanding
    agreed = (sum(demo.minted.values()), spent, sum(demo.held.values())) == (
        minted,
        credited,
        outstanding,
    )
    verdict = "HOLDS" if conserved and agreed else "DOES NOT HOLD"
    out(f"{'scrip conservation':<21}{verdict:>20}")
    out(f"  (minted = credited + returned + outstanding: {minted:,} = {credited:,}")
    out(f" + {returned:,} + {outstanding:,})\n")
    return conserved and agreed


def run_demo(
    payments: int, data_dir: Path | None, keys: KeyBackend = "file", scheme: Scheme = "payword"
) -> int:
    """The demo, start to finish; returns the exit code."""
    keep = data_dir is not None
    root = data_dir or Path(tempfile.mkdtemp(prefix="micropay-demo-"))
    make_private_dir(root)
    demo = Demo(root.resolve(), payments, keys, scheme)
    try:
        start(demo)
        seconds = pay(demo)
        summary, report = finish(demo)
        ok = summarize(demo, summary, report, seconds)
    except (RuntimeError, OSError, softhsm.SoftHsmError) as error:
        say(f"failed: {error}")
        ok = False
    finally:
        with contextlib.suppress(Exception):
            demo.stop_all()
        if keep:
            say(f"everything it wrote is in {root}; the audit's charts: {root / 'report.html'}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1
