"""The thin asyncio shell around a protocol core: pump messages, re-arm timers, persist, publish.

Ordering is the whole point. Whatever a core returns is persisted (``persist``) *before*
anything the core queued up to then is published, so no receipt, acknowledgement or
payword leaves the process ahead of its durable record. This is a group commit: the
reader, the timers and the commands stage events under one lock; the committer task,
whenever it is free, takes everything staged together with the core's output at that
instant (``data_to_send``, ``held_replies``), persists the events in one transaction, and
only then releases that output to the publisher. Under load, one transaction and one
receipt per chain cover every payment that arrived while the previous commit ran; when
idle, a payment is committed alone at once. Publishing never happens in the receive loop.

Received messages are acknowledged the same way: the committer sends their PUBACKs only
after the transaction that covers them, so a crash before the commit leaves them
unacknowledged and Mosquitto redelivers them (at-least-once end to end; the cores'
handlers are idempotent). Since the client holds no more unacknowledged messages than its
Receive Maximum, a committer that falls behind stops the flow at Mosquitto instead of
growing a queue here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Final, Generic, TypeVar

from agents.runtime.mqtt import AckToken, LinkError, MqttLink, PacketTooLargeError
from agents.runtime.supervision import first_failure
from protocol.core import Core
from protocol.events import (
    HeadReceived,
    LedgerHeadWitnessed,
    MessageRejected,
    Outgoing,
    PeerError,
    StateBehind,
)
from protocol.messages import SignedHead

log = logging.getLogger("micropay.loop")
T = TypeVar("T")
E = TypeVar("E")

MAX_IN_FLIGHT = 256
MAX_STAGED = 8192
"""Staged events past which the reader waits for the committer (with aiomqtt, which does
not bound what it holds; the mqtt5 client's Receive Maximum bounds it first)."""
RECONNECT_MIN, RECONNECT_MAX = 0.5, 30.0
REARM_INTERVAL = 0.25
"""How often activity may make the timer task ask the core again (s)."""


Persist = Callable[[list[E]], Awaitable[None]]
"""Make a batch's events durable; the loop publishes the batch's output only after it returns."""
Clock = Callable[[], float]


_LOGGED: Final = (MessageRejected, PeerError, LedgerHeadWitnessed, HeadReceived, StateBehind)
"""The events ``log_event`` has a line for."""


def log_event(event: object) -> None:
    """The events every role's shell logs the same way (rejections, refusals, ledger news)."""
    match event:
        case MessageRejected():
            log.warning(
                "rejected message on %s from %r: %s (%s)",
                event.topic,
                event.sender,
                event.error,
                event.error.code,
            )
        case PeerError():
            log.warning("%s refused: %s %s", event.peer, event.code, event.detail)
        case LedgerHeadWitnessed() | HeadReceived() | StateBehind():
            log_ledger_news(event)
        case _:
            pass


def log_ledger_news(event: LedgerHeadWitnessed | HeadReceived | StateBehind) -> None:
    """Alarms about the broker's ledger or this agent's own state, at the level they deserve.

    A stale or repeated head (Mosquitto re-delivering a retained message) is routine and
    logged at DEBUG; a contradiction or a regression is evidence against the broker.
    """
    if isinstance(event, StateBehind):
        log.error("%s state is behind: %s", event.whose, event.detail)
        return
    seq, where = (
        (event.seq, "broadcast")
        if isinstance(event, LedgerHeadWitnessed)
        else (event.signed.seq, "receipt")
    )
    match event.verdict:
        case "contradiction":
            log.error(
                "the broker signed two different ledger heads for seq %s (%s): its ledger was"
                " rewritten; the evidence is kept (`micropay witness` shows it)",
                seq,
                where,
            )
        case "regression":
            log.error(
                "the broker signed ledger head %s (%s) after a higher one: its ledger went"
                " backwards; the evidence is kept (`micropay witness` shows it)",
                seq,
                where,
            )
        case "stale" | "seen":
            log.debug("ledger head %s (%s) re-delivered: %s", seq, where, event.verdict)
        case _:
            pass


class AgentLoop(Generic[E]):
    """Runs one core against one MQTT connection, reconnecting until stopped."""

    def __init__(  # noqa: PLR0913 - the core, its link and its hooks
        self,
        core: Core[E],
        link: MqttLink,
        persist: Persist[E],
        *,
        batch: int = 512,
        clock: Clock = time.time,
        on_connect: Callable[[float], None] | None = None,
        react: Callable[[E, float], None] | None = None,
        head: Callable[[], SignedHead | None] | None = None,
    ) -> None:
        self.core = core
        self.link = link
        self.persist = persist
        self.batch = batch
        self.clock = clock
        self.on_connect = on_connect
        self.react = react
        self.head = head  # the signed head of the last commit, for held replies
        self.connected = asyncio.Event()
        # set when the very first connection attempt fails: a short command says so at
        # once (Mosquitto not running, a wrong port) instead of retrying until its timeout
        self.first_attempt_failed = asyncio.Event()
        self.ever_connected = False
        self.stopping = asyncio.Event()
        self.link_error = ""  # why the last connection attempt failed or dropped
        self.received = 0
        self.rejected = 0
        self.rejections: Counter[str] = Counter()  # by error code, for status and tests
        self.sent: Counter[str] = Counter()  # published, by topic, for the metrics
        self.commits = 0  # transactions the committer has run, for the metrics
        self._lock = asyncio.Lock()
        self._outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._unsent: Outgoing | None = None  # taken from the outbox, not yet published
        self._staged_events: list[E] = []
        self._staged_acks: list[AckToken] = []
        self._staged = 0  # stagings so far
        self._covered = 0  # stagings the last completed commit covered
        self._wake = asyncio.Event()  # something is staged
        self._committed = asyncio.Event()  # a commit completed
        self._commit_failed = False
        self._timer_moved = asyncio.Event()  # the core may have armed an earlier timer
        self._committer: asyncio.Task[None] | None = None
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    # --- driving the core from outside (commands, shutdown) ------------------------------------

    async def act(self, action: Callable[[float], object]) -> None:
        """Run a core method that only queues output (a query, a redemption round).

        It runs at the loop's ``now``; its output is queued like a batch's.
        """
        async with self._lock:
            action(self.clock())
            self._stage([])

    async def record(self, action: Callable[[float], E]) -> E:
        """Run a core method that returns an event (``pay``, ``open_channel``).

        The event is persisted before the output the method queued is published.
        """
        async with self._lock:
            event = action(self.clock())
            self._stage([event])
        await self._keep_up()
        return event

    async def act_async(self, action: Callable[[], Awaitable[T]]) -> T:
        """Like ``act`` for an action that does its own persisting (operator commands)."""
        async with self._lock:
            result = await action()
            self._stage([])
        return result

    async def flush(self) -> None:
        """Queue whatever the core has to send (after persisting nothing new)."""
        async with self._lock:
            self._stage([])

    async def drain(self, within: float = 10.0) -> bool:
        """Wait until everything staged is durable and acknowledged; False after ``within`` s."""
        try:
            async with asyncio.timeout(within):
                await self._commit_covers(self._staged)
                await self._outbox.join()
        except TimeoutError:
            return False
        return True

    async def responsive(self, within: float) -> bool:
        """Whether the loop still makes progress: its committer lives and its lock frees up.

        A reader stuck behind a hung store holds the lock; the service watchdog asks this.
        """
        if self._committer is None or self._committer.done():
            return False
        try:
            async with asyncio.timeout(within), self._lock:
                return True
        except TimeoutError:
            return False

    def _stage(self, events: list[E], acks: AckToken | None = None) -> None:
        """Hand events (and the messages they came from) to the committer; under the lock.

        The committer takes the core's output when it takes these events, so whatever the
        core queued up to now is published only after they are durable.
        """
        committer = self._ensure_committer()
        if committer.done():
            committer.result()  # a store that failed stops the agent, loudly
        self._timer_moved.set()
        self._staged_events.extend(events)
        if acks is not None and acks[1]:
            self._staged_acks.append(acks)
        self._staged += 1
        self._wake.set()

    async def _keep_up(self) -> None:
        """Wait (outside the lock) while the committer is far behind.

        Not once it has failed: nothing would ever drain what is staged, and this loop would
        spin without yielding; the next ``_stage`` raises the store's error instead.
        """
        while len(self._staged_events) >= MAX_STAGED and not self._commit_failed:
            await self._commit_covers(self._staged)

    async def _commit_covers(self, staging: int) -> None:
        """Wait until a completed commit covers the ``staging``-th staging."""
        while self._covered < staging and not self._commit_failed:
            self._committed.clear()
            await self._committed.wait()

    def _ensure_committer(self) -> asyncio.Task[None]:
        if self._committer is None:
            self._commit_failed = False
            self._committer = asyncio.create_task(self._commit_loop(), name="store-commit")
        return self._committer

    async def _commit_loop(self) -> None:
        """Take everything staged and the core's output, persist, then acknowledge and publish."""
        while True:
            await self._wake.wait()
            async with self._lock:
                self._wake.clear()
                events, self._staged_events = self._staged_events, []
                acks, self._staged_acks = self._staged_acks, []
                outgoing = self.core.data_to_send()
                held = self.core.held_replies()
                staging = self._staged
            if events:
                try:
                    await self.persist(events)
                except BaseException:
                    self._commit_failed = True  # nothing commits any more; ``run`` says why
                    self._committed.set()
                    raise
                self.commits += 1
            self._covered = staging
            for token in acks:
                self.link.acknowledge(token)
            head = self.head() if self.head is not None else None
            now = self.clock()
            for out in outgoing:
                self._outbox.put_nowait(out)
            for reply in held:
                self._outbox.put_nowait(reply.sealed(head, now))
            self._committed.set()

    # --- the connection ----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff; return once ``stopping`` is set.

        Raises ``AgentFailedError`` at once if the store's commit task dies: nothing could be
        made durable any more, so nothing may be acknowledged. ``MqttRefusedError`` (one)
        ends it too: Mosquitto refused our credentials, and asking again cannot help.
        """
        committer = self._ensure_committer()
        try:
            await first_failure(
                self._reconnect_loop(RECONNECT_MIN), {"the store's commit task": committer}
            )
        finally:
            committer.cancel()
            with contextlib.suppress(BaseException):
                await committer
            self._committer = None

    async def _reconnect_loop(self, delay: float) -> None:
        while not self.stopping.is_set():
            lost: BaseException | None = None
            try:
                async with self.link:
                    await self.link.subscribe(self.core.subscriptions())
                    self.connected.set()
                    self.ever_connected = True
                    delay = RECONNECT_MIN
                    log.info("%s connected to MQTT", self.core.account)
                    if self.on_connect is not None:
                        self.on_connect(self.clock())
                        await self.flush()
                    await self._serve()
            except* LinkError as group:
                lost = group.exceptions[0]
            self.connected.clear()
            if lost is None or self.stopping.is_set():
                continue
            self.link_error = str(lost)
            if not self.ever_connected:
                self.first_attempt_failed.set()
            what = "lost" if self.ever_connected else "failed"
            log.warning("MQTT connection %s (%s); retrying in %.1f s", what, lost, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            delay = min(delay * 2, RECONNECT_MAX)

    async def _serve(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            workers = [
                tasks.create_task(self._read(), name="mqtt-read"),
                tasks.create_task(self._timers(), name="core-timers"),
                tasks.create_task(self._publish(), name="mqtt-publish"),
            ]
            await self.stopping.wait()
            await self.drain()
            for task in workers:
                task.cancel()

    async def _read(self) -> None:
        """Feed received messages to the core; stage each batch with its acknowledgements.

        The lock is held across a batch, not per message: a batch ends when nothing more
        is waiting (or at ``batch`` messages), before the link's iterator would wait.
        """
        events: list[E] = []
        count = 0
        link, core, lock, clock, react = self.link, self.core, self._lock, self.clock, self.react
        holding = False
        try:
            async for topic, payload in link.messages(acknowledge=False):
                if not holding:
                    await lock.acquire()
                    holding = True
                self.received += 1
                now = clock()
                for event in core.receive(topic, payload, now):
                    if isinstance(event, _LOGGED):  # one class check for a payment's events
                        if isinstance(event, MessageRejected):
                            self.rejected += 1
                            self.rejections[event.error.code] += 1
                        log_event(event)
                    if react is not None:
                        react(event, now)  # may queue more output into this same batch
                    events.append(event)
                count += 1
                if count >= self.batch or link.pending() == 0:
                    self._stage(events, link.delivered())
                    events, count = [], 0
                    lock.release()
                    holding = False
                    await self._keep_up()
        finally:
            if holding:
                lock.release()

    async def _timers(self) -> None:
        """Sleep until the core's timer is due; re-armed from ``get_timer`` after activity.

        A batch may arm an earlier timer, so each one wakes this task, which asks the core
        again, at most every ``REARM_INTERVAL`` s: ``get_timer`` may walk every chain.
        """
        while True:
            self._timer_moved.clear()
            now = self.clock()
            due = self.core.get_timer()
            if due is not None and due <= now:
                async with self._lock:
                    self._stage(list(self.core.handle_timer(self.clock())))
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if due is None else due - now):
                    await self._timer_moved.wait()
                    await asyncio.sleep(REARM_INTERVAL)

    async def _publish(self) -> None:
        """Publish what the committer released, many in flight, without a task per message.

        A message stays in ``_unsent`` until the link has taken it: if the connection drops
        (or this task is cancelled) while it waits for room, the next connection sends it.
        """
        link = self.link
        while True:
            if self._unsent is None:
                self._unsent = await self._outbox.get()
            out = self._unsent
            await self._in_flight.acquire()
            try:
                if not link.has_room():
                    await link.room()
                done = link.publish_nowait(out.topic, out.payload, retain=out.retain)
            except PacketTooLargeError as error:  # it never will fit: dropped, and said so
                self._unsent = None
                self._published_one(out, error)
                continue
            except BaseException:  # cancelled, or the connection is gone: kept for the next
                self._in_flight.release()
                raise
            self._unsent = None
            done.add_done_callback(lambda future, out=out: self._after_publish(out, future))  # type: ignore[misc]

    def _after_publish(self, out: Outgoing, future: asyncio.Future[None]) -> None:
        error = LinkError("cancelled") if future.cancelled() else future.exception()
        self._published_one(out, error)

    def _published_one(self, out: Outgoing, error: BaseException | None) -> None:
        if error is None:
            self.sent[out.topic] += 1
        else:
            # The core retransmits whatever matters (commits, payments, redemptions) from
            # its own timers; a lost receipt is re-sent when the duplicate payment arrives.
            log.warning("publish to %s failed: %s", out.topic, error)
        self._in_flight.release()
        self._outbox.task_done()
