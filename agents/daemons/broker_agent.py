"""The broker: its files, its operator actions, and its daemon.

A broker's data directory holds its key file, its public identity (what agents are
configured with) and its ledger. The protocol core is rebuilt from the ledger at start;
every event the core emits is appended (durably, group-committed) before the reply that
depends on it is published. Operator actions (open an account, revoke, close a period)
go through the running daemon's admin socket, or straight to the ledger when it is not
running, so the daemon's state and the ledger never disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agents.daemons import admin_input
from agents.daemons.broker_log import log_decisions
from agents.runtime.keystore import create_identity, load_identity
from agents.runtime.loop import AgentFailedError, AgentLoop, Clock, first_failure
from agents.runtime.mqtt import MqttLink, MqttSettings
from agents.runtime.private_files import check_private_dir, make_private_dir, write_private
from broker_ledger.billing import BASIS_POINTS, PeriodSummary, close_period
from broker_ledger.projections import Projector
from broker_ledger.store import EventStore, LedgerError
from protocol.broker import BrokerCore, BrokerPolicy
from protocol.broker_events import BROKER_EVENT_TYPES
from protocol.endpoint import BrokerInfo
from protocol.events import BrokerCoreEvent, PublishedHeadSeen
from protocol.messages import Role
from protocol.money_rules import MAX_TOTAL

log = logging.getLogger("micropay.broker")

KEY_FILE: Final = "broker.key"
PUBLIC_FILE: Final = "broker.pub.json"
LEDGER_FILE: Final = "ledger.db"
ADMIN_SOCKET: Final = "admin.sock"


class BrokerSetupError(Exception):
    """The data directory is missing or not a broker's."""


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The layout of a broker's data directory."""

    directory: Path

    @property
    def key(self) -> Path:
        """The private key file."""
        return self.directory / KEY_FILE

    @property
    def public(self) -> Path:
        """The public identity agents are configured with."""
        return self.directory / PUBLIC_FILE

    @property
    def ledger(self) -> Path:
        """The ledger file."""
        return self.directory / LEDGER_FILE

    @property
    def admin(self) -> Path:
        """The daemon's admin socket."""
        return self.directory / ADMIN_SOCKET


def write_public(path: Path, info: BrokerInfo) -> None:
    """The broker's public identity as JSON (hex keys)."""
    data = {"broker": info.id, "sign_key": info.sign_key.hex(), "agree_key": info.agree_key.hex()}
    write_private(path, json.dumps(data, indent=2) + "\n")


def read_public(path: Path) -> BrokerInfo:
    """Read a broker's public identity file."""
    try:
        data = json.loads(path.read_text())
        return BrokerInfo(
            data["broker"], bytes.fromhex(data["sign_key"]), bytes.fromhex(data["agree_key"])
        )
    except FileNotFoundError as exc:
        raise BrokerSetupError(f"no broker identity at {path}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise BrokerSetupError(f"{path} is not a broker identity file: {exc}") from exc


async def init_broker(directory: Path, broker_id: str) -> BrokerInfo:
    """Create keys, the public identity file and an empty ledger."""
    files = BrokerFiles(directory)
    make_private_dir(directory)
    identity = create_identity(files.key)
    info = BrokerInfo(broker_id, identity.sign_key, identity.agree_key)
    write_public(files.public, info)
    store = await EventStore.open(files.ledger, broker_id, signer=identity)
    await store.close()
    return info


class BrokerService:
    """The broker core, its ledger and its read models, opened together."""

    def __init__(
        self, files: BrokerFiles, core: BrokerCore, store: EventStore, clock: Clock = time.time
    ) -> None:
        self.files = files
        self.clock = clock
        self.core = core
        self.store = store
        self._projector: Projector | None = None
        self.failure: BaseException | None = None
        self._failed = asyncio.Event()

    @classmethod
    async def open(cls, directory: Path, policy: BrokerPolicy | None = None) -> BrokerService:
        """Load keys and rebuild the core from the ledger."""
        files = BrokerFiles(directory)
        if not files.key.exists():
            raise BrokerSetupError(f"{directory} has no broker keys: run `micropay broker init`")
        check_private_dir(directory)
        identity = load_identity(files.key)
        info = read_public(files.public)
        store = await EventStore.open(files.ledger, info.id, signer=identity)
        core = BrokerCore(info.id, identity, policy=policy, attest_replies=True)
        try:
            async for row in store.replay():
                core.apply(store.decode(row))
        except BaseException:
            await store.close()
            raise
        return cls(files, core, store)

    async def persist(self, decided: Sequence[BrokerCoreEvent]) -> None:
        """Append the ledger events the core decided; called before its replies go out.

        The core has already applied these events: if they cannot be made durable, its
        state is ahead of the ledger, so the service is failed (the daemon stops and the
        next start rebuilds the core from the ledger).
        """
        events = [event for event in decided if isinstance(event, BROKER_EVENT_TYPES)]
        if not events:
            return
        try:
            stored = await self.store.append_events(events)
        except LedgerError as exc:
            self.failure = exc
            self._failed.set()
            raise
        log_decisions((row.seq, event) for row, event in zip(stored, events, strict=True))

    async def wait_failed(self) -> None:
        """Return (by raising) once the ledger can no longer take what the core decided."""
        waiting = [
            asyncio.ensure_future(self._failed.wait()),
            asyncio.ensure_future(self.store.wait_failed()),
        ]
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waiting:
                future.cancel()
        cause = self.failure or self.store.failure
        raise AgentFailedError(f"the ledger refused a write: {cause!r}")

    async def project(self) -> int:
        """Bring the read-model tables up to date."""
        if self._projector is None:
            self._projector = await Projector.open(self.files.ledger)
        position = self._projector.models.position
        rows = await self.store.read_all(after=position, limit=1_000_000_000)
        return await self._projector.catch_up((row.seq, self.store.decode(row)) for row in rows)

    async def close(self) -> None:
        """Project (unless the ledger failed), close the files; every commit is signed."""
        try:
            if self.failure is None and self.store.failure is None:
                await self.project()
        finally:
            if self._projector is not None:
                await self._projector.close()
            await self.store.close()

    # --- operator actions --------------------------------------------------------------------

    async def open_account(
        self, account: str, role: Role, credit_limit: int, currency: str
    ) -> bytes:
        """Open an account; returns its one-time enrollment token."""
        await self.persist(
            [self.core.open_account(account, role, credit_limit, currency, self.clock())]
        )
        return self.core.enrollment_token(account)

    async def revoke(self, account: str, reason: str) -> None:
        """Revoke an account's certificate (the revocation list is republished)."""
        await self.persist(self.core.revoke(account, self.clock(), reason))

    async def close_period(self, period: str, basis_points: int) -> PeriodSummary:
        """Close a billing period and update the read models."""
        summary = await close_period(
            self.store, period, at=int(self.clock() * 1000), basis_points=basis_points
        )
        await self.project()
        if summary.newly_closed:
            log.info(
                "period closed: %s invoices=%d statements=%d debited=%d credited=%d fees=%d"
                " covering seq=%d..%d",
                summary.period,
                summary.invoices,
                summary.statements,
                summary.debited,
                summary.credited,
                summary.fees,
                summary.after_sequence + 1,
                summary.through_sequence,
            )
        return summary


async def run_admin_request(  # noqa: PLR0911 - one answer per command
    service: BrokerService, request: dict[str, Any]
) -> dict[str, Any]:
    """Execute one operator request (from the admin socket or the offline CLI).

    Every field is validated here, at the edge, before anything reaches the core or the
    ledger; a refusal is an answer, never an exception in the daemon.
    """
    command = request.get("command")
    try:
        if command == "open-account":
            token = await service.open_account(
                admin_input.name(request, "account"),
                admin_input.role(request),
                admin_input.integer(request, "credit_limit", 0, MAX_TOTAL),
                admin_input.text(request, "currency", "EUR", 3),
            )
            return {"ok": True, "token": token.hex()}
        if command == "revoke":
            await service.revoke(
                admin_input.name(request, "account"),
                admin_input.text(request, "reason", "operator", 256),
            )
            return {"ok": True}
        if command == "close-period":
            summary = await service.close_period(
                admin_input.name(request, "period"),
                admin_input.integer(request, "fee_basis_points", 0, BASIS_POINTS, default=0),
            )
            return {"ok": True, "summary": summary_dict(summary)}
        if command == "status":
            totals = service.core.totals
            return {
                "ok": True,
                "accounts": len(service.core.accounts),
                "enrolled": sorted(
                    name for name, account in service.core.accounts.items() if account.serial
                ),
                "commitments": len(service.core.chains),
                "debited": sum(totals.debited.values()),
                "credited": sum(totals.credited.values()),
                "ledger_head": service.store.head[0],
            }
    except admin_input.AdminInputError as exc:
        return {"ok": False, "error": str(exc)}
    except LedgerError as exc:
        return {"ok": False, "error": f"the ledger refused the write ({exc}); the broker stops"}
    except Exception as exc:  # noqa: BLE001 - report every refusal to the operator
        return {"ok": False, "error": str(exc)}
    return {"ok": False, "error": f"unknown command {command!r}"}


def summary_dict(summary: PeriodSummary) -> dict[str, Any]:
    """A period summary as JSON-ready data."""
    return {
        "period": summary.period,
        "through_sequence": summary.through_sequence,
        "invoices": summary.invoices,
        "statements": summary.statements,
        "debited": summary.debited,
        "credited": summary.credited,
        "fees": summary.fees,
        "newly_closed": summary.newly_closed,
    }


async def send_admin_request(socket_path: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """Ask a running daemon; ``None`` when no daemon listens on the socket."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    answer: dict[str, Any] = json.loads(line)
    return answer


async def operator_request(directory: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Through the running daemon if there is one, else directly on the ledger."""
    files = BrokerFiles(directory)
    answer = await send_admin_request(files.admin, request)
    if answer is not None:
        return answer
    service = await BrokerService.open(directory)
    try:
        return await run_admin_request(service, request)
    finally:
        await service.close()


async def sign_unsigned_tail(directory: Path, through: int) -> tuple[int, int]:
    """After an audit, sign the head over events no signature covers (the daemon stopped).

    Returns (first event signed now, last). For a ledger of an earlier version that
    stopped uncleanly; a healthy ledger has nothing to sign.
    """
    files = BrokerFiles(directory)
    if await send_admin_request(files.admin, {"command": "status"}) is not None:
        raise BrokerSetupError("the broker daemon is running on this directory: stop it first")
    if not files.key.exists():
        raise BrokerSetupError(f"{directory} has no broker keys")
    check_private_dir(directory)
    identity = load_identity(files.key)
    info = read_public(files.public)
    store = await EventStore.open(files.ledger, info.id, signer=identity, unsigned_tail=True)
    try:
        first = store.unsigned_from
        signed = await store.sign_tail(through)
    finally:
        await store.close()
    log.warning("signed ledger head %s over unsigned events %s..%s", signed.seq, first, signed.seq)
    return first, signed.seq


class BrokerDaemon:
    """The long-running broker: MQTT loop, admin socket, periodic projection."""

    def __init__(
        self, service: BrokerService, mqtt: MqttSettings, witness_interval: float = 30.0
    ) -> None:
        self.service = service
        self.witness_interval = witness_interval
        self._witnessed = -1
        self.loop: AgentLoop[BrokerCoreEvent] = AgentLoop(
            service.core,
            MqttLink(mqtt),
            service.persist,
            clock=service.clock,
            on_connect=self._announce,
            react=self._react,
            head=lambda: service.store.signed_head,
        )

    def _react(self, event: BrokerCoreEvent, _now: float) -> None:
        """Its own retained head, read back at connect: is the ledger older than it?"""
        if not isinstance(event, PublishedHeadSeen):
            return
        seq, head = self.service.store.durable_head
        if event.seq > seq or (event.seq == seq and event.head != head):
            log.error(
                "this broker signed and published ledger head %s at %s, but its ledger ends at"
                " %s with another history: the ledger was restored from an older copy or cut."
                " Agents holding receipts above %s will notice and re-send their redemptions;"
                " compare with `micropay audit --witness`",
                event.seq,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(event.at / 1000)),
                seq,
                seq,
            )

    def _announce(self, now: float) -> None:
        core = self.service.core
        core.publish_identity(now)
        core.publish_revocations(now)
        self._witnessed = -1  # a new connection: publish the head again
        self._publish_head(now)

    def _publish_head(self, now: float) -> None:
        """Publish the durable ledger head if it moved since the last publication."""
        seq, head = self.service.store.durable_head
        if seq > self._witnessed:
            self.service.core.publish_ledger_head(seq, head, now)
            self._witnessed = seq

    async def _witness_periodically(self) -> None:
        """Every agent connected keeps these signed heads: a rewrite contradicts them."""
        while True:
            await asyncio.sleep(self.witness_interval)
            if self.loop.connected.is_set():
                await self.loop.act(self._publish_head)

    async def stop(self) -> None:
        """Publish the final signed head (what a restored ledger is compared with), then stop."""
        if self.loop.connected.is_set() and not self.loop.stopping.is_set():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.loop.act(self._publish_head)
        self.loop.stopping.set()

    async def _admin(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            request = json.loads(line) if line else {}
            answer = await self.loop.act_async(lambda: run_admin_request(self.service, request))
        except (ValueError, ConnectionError) as exc:
            answer = {"ok": False, "error": str(exc)}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def _project_periodically(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            await self.service.project()

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT; then finish in-flight work and close the ledger.

        Crash-only: if the ledger writer, the projector or the head publisher stops, the
        daemon raises ``AgentFailedError`` at once instead of living on without it.
        """
        loop = asyncio.get_running_loop()
        stopping: set[asyncio.Task[None]] = set()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: stopping.add(asyncio.create_task(self.stop())))
        admin_path = self.service.files.admin
        admin_path.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._admin, path=str(admin_path))
        admin_path.chmod(0o600)
        log.info(
            "broker %s serving (ledger %s, head %s)",
            self.service.core.account,
            self.service.files.ledger,
            self.service.store.durable_head[0],
        )
        serving = asyncio.create_task(self.loop.run(), name="broker-loop")
        try:
            await first_failure(
                serving,
                {
                    "the ledger writer": self.service.wait_failed(),
                    "the projector": self._project_periodically(),
                    "the ledger-head publisher": self._witness_periodically(),
                },
            )
        finally:
            server.close()
            admin_path.unlink(missing_ok=True)
            await self.service.close()
            log.info("broker stopped; ledger head %s", self.service.store.durable_head[0])
