"""The broker core, its ledger and its read models, opened together.

The protocol core is rebuilt from the ledger at start; every event the core emits is
appended (durably, group-committed) before the reply that depends on it is published.
Operator actions run here, so the daemon's state and the ledger never disagree. A service
holds its data directory's lock from open to close: it is the directory's one writer,
and only it may replace or remove the admin socket there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from agents.daemons.broker_files import BrokerFiles, BrokerSetupError, read_public
from agents.daemons.broker_key_files import load_broker_keys
from agents.daemons.broker_log import log_decisions
from agents.runtime.datadir_lock import DataDirLock
from agents.runtime.loop import Clock
from agents.runtime.private_files import check_private_dir
from agents.runtime.supervision import AgentFailedError
from broker_ledger.billing import PeriodSummary, close_period
from broker_ledger.projections import Projector
from broker_ledger.store import EventStore, LedgerError
from protocol.broker import BrokerCore, BrokerPolicy
from protocol.broker_events import BROKER_EVENT_TYPES, AnyBrokerEvent
from protocol.errors import LocalProtocolError
from protocol.events import BrokerCoreEvent
from protocol.messages import Role

log = logging.getLogger("micropay.broker")


class BrokerService:
    """The broker core, its ledger and its read models, opened together."""

    def __init__(
        self,
        files: BrokerFiles,
        core: BrokerCore,
        store: EventStore,
        lock: DataDirLock,
        clock: Clock = time.time,
    ) -> None:
        self.files = files
        self.lock = lock
        self.clock = clock
        self.core = core
        self.store = store
        self._projector: Projector | None = None
        self.failure: BaseException | None = None
        self._failed = asyncio.Event()
        self.on_stored: Callable[[Sequence[AnyBrokerEvent], float], None] | None = None
        """Told of each append and how long it took (s): where the metrics count."""

    @classmethod
    async def open(
        cls, directory: Path, policy: BrokerPolicy | None = None, *, daemon: bool = False
    ) -> BrokerService:
        """Take the directory, load keys and rebuild the core from the ledger.

        A ``daemon`` gives an operator's offline command a moment to finish first.
        """
        files = BrokerFiles(directory)
        if not files.key.exists():
            raise BrokerSetupError(f"{directory} has no broker keys: run `micropay broker init`")
        check_private_dir(directory)
        if daemon:
            lock = await DataDirLock.acquire_for_daemon(directory, "broker daemon")
        else:
            lock = DataDirLock.acquire(directory, "broker command")
        try:
            identity = load_broker_keys(files)
            info = read_public(files.public)
            store = await EventStore.open(files.ledger, info.id, signer=identity)
            core = BrokerCore(info.id, identity, policy=policy, attest_replies=True)
            try:
                async for row in store.replay():
                    core.apply(store.decode(row))
            except BaseException:
                await store.close()
                raise
        except BaseException:
            lock.release()
            raise
        return cls(files, core, store, lock)

    async def persist(self, decided: Sequence[BrokerCoreEvent]) -> None:
        """Append the ledger events the core decided; called before its replies go out.

        The core has already applied these events: if they cannot be made durable, its
        state is ahead of the ledger, so the service is failed (the daemon stops and the
        next start rebuilds the core from the ledger).
        """
        events = [event for event in decided if isinstance(event, BROKER_EVENT_TYPES)]
        if not events:
            return
        started = time.perf_counter()
        try:
            stored = await self.store.append_events(events)
        except LedgerError as exc:
            self.failure = exc
            self._failed.set()
            raise
        if self.on_stored is not None:
            self.on_stored(events, time.perf_counter() - started)
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

    @property
    def projected(self) -> int | None:
        """The last ledger seq folded into the read models (``None``: not opened yet)."""
        return None if self._projector is None else self._projector.models.position

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
            try:
                if self._projector is not None:
                    await self._projector.close()
                await self.store.close()
            finally:
                self.lock.release()

    # --- operator actions --------------------------------------------------------------------

    async def open_account(
        self, account: str, role: Role, credit_limit: int, currency: str, allowance: int = 0
    ) -> bytes:
        """Open an account (a buyer with its daily allowance); returns its enrollment token."""
        now = self.clock()
        if allowance and role != "buyer":
            raise LocalProtocolError("only buyers have a daily allowance")
        events: list[AnyBrokerEvent] = [
            self.core.open_account(account, role, credit_limit, currency, now)
        ]
        if allowance:
            events.append(self.core.set_allowance(account, allowance, now))
        await self.persist(events)
        return self.core.enrollment_token(account)

    async def set_allowance(self, account: str, amount: int) -> None:
        """Set a buyer's daily off-line allowance (docs/SCHEMES.md §4); 0: none."""
        await self.persist([self.core.set_allowance(account, amount, self.clock())])

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
                extra={
                    "period": summary.period,
                    "fee_basis_points": summary.fee_basis_points,
                    "debited": summary.debited,
                    "credited": summary.credited,
                    "fees": summary.fees,
                },
            )
        return summary
