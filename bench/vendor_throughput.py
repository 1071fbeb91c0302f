"""Verified, durable payments per second at one vendor, against the raw MQTT ceiling.

Everything runs on this machine over one Mosquitto started from the project's
``mosquitto.conf`` (via ``agents.ops.mosquitto``) on a free loopback port. Processes: Mosquitto,
a broker daemon, the vendor daemon, one or two load processes (or the raw pipe's two ends),
and this orchestrator, which only waits while a case runs.

Each MQTT client behind the agents' seam (``--client mqtt5|aiomqtt|both``, default both) is
measured in the same run, as the client of the process under test: the vendor daemon (its
``MqttSettings.client``) and the raw pipe's subscriber. The load generators, (a)'s publisher
and (b)'s buyers, always use the fast client (``Mqtt5Link.publish_nowait``, within the
server's Receive Maximum: ``has_room`` / ``room``), so the load is not what is measured.

(a) raw ceiling: plain QoS 1 messages as large as a payment envelope, one publisher process
    to one subscriber process that reads through the client under test (``open_link``):
    one-way, and again with the subscriber acknowledging cumulatively (as the vendor's
    receipts do) and the publisher keeping the one-buyer case's window. The ceiling is the
    faster of the two. Each message carries its publish time: the subscriber reports the
    publish -> arrival latency.
(b) payments at ONE real ``VendorAgent`` (its own process; its ``VendorStore`` SQLite file in
    WAL mode with ``synchronous=FULL``), enrolled at a real ``BrokerDaemon`` (its own
    process), paid by real buyers: ``BuyerCore`` with their own keys, certificates from the
    broker and signed commitments the vendor verifies. To measure the vendor and not the
    buyers' wallets, the load processes pre-compute every payment envelope
    (``BuyerCore.pay`` + ``data_to_send``) once the vendor has accepted the commitment, then
    publish them as fast as the vendor acknowledges: each buyer keeps at most ``--window``
    payments beyond the last cumulative receipt, which ``BuyerCore.receive`` verifies. With
    1 buyer (one load process) and 16 buyers (two load processes of 8 by default).
(c) the ratio (b) / (a), per client, against the same round's ceiling of that client.
(d) the vendor's CPU time per payment (user + system, from /proc/<pid>/task/*/stat: its
    event-loop thread and its other threads, i.e. the store's).
(e) latency from the publish of a payment to the receipt that covers it, p50 / p99; and
    again with one buyer paced at half the 1-buyer peak just measured (half as many
    payments), the run the p99 target is read from.

After each case it stops the vendor (which redeems at the broker), reads the vendor's
``store.db`` (``VendorStore.totals``) and checks it holds exactly what the buyers paid, that
nothing was rejected, and that the broker credited the same amount. It also times the
vendor loop's ``persist`` hook (how long the reader waits on the store), and with
``--profile`` samples the vendor with py-spy (if on PATH; else cProfile inside it) to show
where its time goes. The report ends with PASS / SHORT per target and client.

This host's speed drifts (the report shows a CPU-speed probe); ``--rounds 3`` repeats
everything and reports medians.

Run: ``uv run --frozen python bench/vendor_throughput.py [--client mqtt5|aiomqtt|both]
[--payments N] [--rounds R] [--quick] [--json] [--profile] [--pin]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import logging
import os
import platform
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final, TypeVar

import msgspec
from prometheus_client import CollectorRegistry
from throughput_report import (
    PACED_SHARE,
    PROBE_HASHES,
    UNIT_VALUE,
    Case,
    ClientRound,
    Raw,
    Results,
    Round,
    percentile,
    report,
    summarize_cprofile,
    summarize_py_spy,
    to_json,
)

from agents.daemons.broker_daemon import BrokerDaemon
from agents.daemons.broker_files import PUBLIC_FILE, init_broker
from agents.daemons.broker_files import read_public as read_broker_public
from agents.daemons.broker_service import BrokerService
from agents.daemons.operator_client import operator_request
from agents.daemons.operator_protocol import (
    AccountRole,
    Asks,
    GrantedT,
    OpenAccount,
    Refused,
    Status,
)
from agents.daemons.vendor_agent import STORE_FILE, VendorAgent
from agents.daemons.vendor_metrics import vendor_metrics
from agents.daemons.vendor_store import VendorStore
from agents.ops.mosquitto import (
    MosquittoFiles,
    MosquittoProcess,
    add_user,
    binary,
    free_port,
    generated_password,
    render,
)
from agents.runtime.gc_tuning import tune_for_daemon
from agents.runtime.loop import AgentLoop
from agents.runtime.mqtt import CLIENTS, ClientName, MqttSettings, open_link
from agents.runtime.mqtt5_link import Mqtt5Link
from agents.runtime.mqtt_link import RECEIVE_MAXIMUM
from protocol import topics
from protocol.buyer import BuyerCore
from protocol.crypto import Identity
from protocol.endpoint import BrokerInfo
from protocol.events import (
    CertificateReceived,
    MessageRejected,
    OfferReceived,
    PeerError,
    ReceiptReceived,
    VendorEvent,
)
from protocol.vendor import VendorTerms

T = TypeVar("T")

SCRIPT: Final = str(Path(__file__).resolve())
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")

BROKER_ID: Final = "broker"
CREDIT: Final = 10**12
READY_TIMEOUT: Final = 120.0  # enrolling and building chains
STALL_TIMEOUT: Final = 30.0  # no receipt (or raw message) for this long: give up
RAW_QUEUE_LIMIT: Final = 90_000  # under mosquitto.conf's max_queued_messages (100,000)
DEFAULT_PAYMENTS: Final = 100_000
QUICK_PAYMENTS: Final = 3_000
DEFAULT_WINDOW_TOTAL: Final = RECEIVE_MAXIMUM
"""Payments in flight beyond the last receipt, over all buyers: the vendor's Receive Maximum,
the most it holds unacknowledged, so its next transaction fills while one commits."""
DEFAULT_LOAD_PROCESSES: Final = 2
STAMP: Final = struct.Struct("d")  # a raw message's publish time (CLOCK_MONOTONIC, system-wide)


class BenchError(Exception):
    """A worker failed, stalled or reported something inconsistent."""


# --- what the orchestrator and its worker processes tell each other (JSON lines) -------------


class MqttConf(msgspec.Struct, frozen=True):
    """Connection settings of one worker connection, and which client it uses."""

    port: int
    username: str
    password: str
    clean: bool = True
    client: ClientName = "mqtt5"

    def settings(self) -> MqttSettings:
        """``MqttSettings`` as the agents build them (daemons keep a persistent session)."""
        return MqttSettings(
            port=self.port,
            username=self.username,
            password=self.password,
            clean=self.clean,
            client=self.client,
        )


class BrokerConf(msgspec.Struct, frozen=True):
    """The broker daemon's data directory and MQTT user."""

    directory: str
    mqtt: MqttConf


class VendorConf(msgspec.Struct, frozen=True):
    """One vendor daemon (``mqtt.client``: the client under test)."""

    directory: str
    account: str
    broker_public: str
    mqtt: MqttConf
    token: str
    max_length: int
    profile: str = ""


class BuyerConf(msgspec.Struct, frozen=True):
    """One buyer inside a load process."""

    account: str
    password: str
    token: str
    payments: int


class LoadConf(msgspec.Struct, frozen=True):
    """A load process: its buyers, the vendor they pay, the window per buyer, the pace."""

    port: int
    broker_public: str
    vendor: str
    buyers: list[BuyerConf]
    window: int
    latency_file: str
    rate: float = 0.0  # payments/s for the whole process; 0: as fast as the window allows


class RawConf(msgspec.Struct, frozen=True):
    """One end of the raw pipe; ``window`` 0 means one-way (no acknowledgements)."""

    mqtt: MqttConf
    peer: str
    count: int
    size: int
    window: int


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    """The worker is set up and waits (load and raw publishers wait for ``go``)."""

    pid: int
    payload_size: int = 0


class Failed(msgspec.Struct, frozen=True, tag="failed"):
    """The worker hit an error; the traceback."""

    error: str


class LoadReport(msgspec.Struct, frozen=True, tag="load"):
    """What one load process saw."""

    buyers: int
    payments: int
    acknowledged: int
    paid: int
    receipts: int
    rejected: int
    errors: list[str]
    first_publish: float
    last_receipt: float
    cpu_s: float


class RawReport(msgspec.Struct, frozen=True, tag="raw"):
    """One end of the raw pipe: messages moved, first and last, CPU in between."""

    messages: int
    first: float
    last: float
    cpu_s: float
    acks: int
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0


class VendorReport(msgspec.Struct, frozen=True, tag="vendor"):
    """The vendor daemon's own counters at exit."""

    payments: int
    amount: int
    received: int
    rejected: int
    transactions: int
    unredeemed: int
    store_waits: int
    store_wait_s: float
    queued_meanwhile: int


WorkerMessage = Ready | Failed | LoadReport | RawReport | VendorReport
_decoder: Final = msgspec.json.Decoder(WorkerMessage)


def emit(message: WorkerMessage) -> None:
    """Send one message to the orchestrator (stdout is reserved for these)."""
    sys.stdout.buffer.write(msgspec.json.encode(message) + b"\n")
    sys.stdout.buffer.flush()


def cpu_seconds() -> float:
    """User + system CPU of this process, all threads."""
    usage = os.times()
    return usage.user + usage.system


async def stdin_lines() -> asyncio.StreamReader:
    """Our stdin as a non-blocking stream (EOF when the orchestrator goes away)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def wait_for_go(stdin: asyncio.StreamReader) -> bool:
    """Whether the orchestrator said ``go`` (rather than closing our stdin)."""
    return (await stdin.readline()).strip() == b"go"


# --- worker: the broker daemon -------------------------------------------------------------


async def broker_worker(conf: BrokerConf) -> None:
    """A real ``BrokerDaemon`` until SIGTERM (or the orchestrator's stdin closes)."""
    stdin = await stdin_lines()
    service = await BrokerService.open(Path(conf.directory))
    daemon = BrokerDaemon(service, conf.mqtt.settings())
    runner = asyncio.create_task(daemon.run(), name="broker")
    async with asyncio.timeout(READY_TIMEOUT):
        await daemon.loop.connected.wait()
    emit(Ready(os.getpid()))
    await stop_on_eof(stdin, runner)


async def stop_on_eof(stdin: asyncio.StreamReader, runner: asyncio.Task[None]) -> None:
    """Await a daemon that stops on SIGTERM; SIGTERM it ourselves if stdin closes first."""
    watcher = asyncio.create_task(stdin.read(), name="stdin-eof")
    done, _ = await asyncio.wait((runner, watcher), return_when=asyncio.FIRST_COMPLETED)
    if watcher in done:
        os.kill(os.getpid(), signal.SIGTERM)
    await runner
    watcher.cancel()


# --- worker: the vendor daemon -------------------------------------------------------------


async def vendor_worker(conf: VendorConf) -> None:
    """A real ``VendorAgent``: enroll with the operator's token, serve until SIGTERM."""
    stdin = await stdin_lines()
    info = read_broker_public(Path(conf.broker_public))
    terms = VendorTerms(unit_value=UNIT_VALUE, max_length=conf.max_length)
    agent = await VendorAgent.open(
        Path(conf.directory), conf.account, info, terms, conf.mqtt.settings()
    )
    agent.token = bytes.fromhex(conf.token)
    vendor_metrics(agent, CollectorRegistry(auto_describe=False))  # measured as deployed
    waits = StoreWaits(agent.loop)
    tune_for_daemon()  # as `micropay vendor run` does
    runner = asyncio.create_task(agent.run(), name="vendor")
    async with asyncio.timeout(READY_TIMEOUT):
        while not agent.core.certificate:  # noqa: ASYNC110 - polling the core's state
            await asyncio.sleep(0.02)
    profiler = cProfile.Profile() if conf.profile else None
    if profiler is not None:
        profiler.enable()
    emit(Ready(os.getpid()))
    try:
        await stop_on_eof(stdin, runner)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(conf.profile)
    emit(
        VendorReport(
            agent.counters.payments,
            agent.counters.amount,
            agent.loop.received,
            agent.loop.rejected,
            agent.store.transactions,
            agent.core.unredeemed_amount,
            waits.calls,
            waits.seconds,
            waits.queued,
        )
    )


class StoreWaits:
    """Times the loop's ``persist`` hook: each batch's commit as the event loop sees it.

    That is the hand-off to the store's thread, the SQL, the fsync and the way back. Where
    the reader itself awaits ``persist`` (``AgentLoop`` up to commit 1a9283b), nothing is
    verified meanwhile; ``queued`` adds up the messages that arrived during the commits.
    Wraps the hook of this one instance, when the loop has one by that name; the agent's
    code is unchanged.
    """

    def __init__(self, loop: AgentLoop[VendorEvent]) -> None:
        self.loop = loop
        self.calls = 0
        self.seconds = 0.0
        self.queued = 0
        inner = getattr(loop, "persist", None)
        if inner is None:
            return

        async def timed(events: list[VendorEvent]) -> None:
            started = time.monotonic()
            await inner(events)
            if events:
                self.seconds += time.monotonic() - started
                self.calls += 1
                self.queued += loop.link.pending()

        loop.persist = timed


# --- worker: a load process of real buyers -------------------------------------------------


class LoadBuyer:
    """One enrolled buyer with one channel to the vendor and its pre-computed payments.

    Always on the fast client (``Mqtt5Link``): its ``publish_nowait`` keeps many payments
    in flight without a task per message, so the load is not what is measured.
    """

    def __init__(self, conf: BuyerConf, port: int, info: BrokerInfo, window: int) -> None:
        self.conf = conf
        self.core = BuyerCore(conf.account, Identity.generate(), info)
        self.link = Mqtt5Link(MqttConf(port, conf.account, conf.password).settings())
        self.window = window
        self.cid = b""
        self.vendor = ""
        self.topic = ""
        self.payloads: list[bytes] = []
        self.sent_at = array("d")
        self.latencies = array("d")
        self.sent = 0
        self.acked = 0
        self.paid = 0
        self.receipts = 0
        self.errors: list[str] = []
        self.first_publish = 0.0
        self.last_receipt = 0.0
        self.certified = asyncio.Event()
        self.offered = asyncio.Event()
        self.committed = asyncio.Event()
        self.progress = asyncio.Event()

    async def _send_queued(self) -> None:
        for out in self.core.data_to_send():
            await self.link.publish(out.topic, out.payload, retain=out.retain)

    async def receive(self) -> None:
        """Every message through ``BuyerCore.receive`` (MAC, replay and order checks)."""
        clock = time.monotonic
        async for topic, payload in self.link.messages():
            for event in self.core.receive(topic, payload, time.time()):
                if isinstance(event, ReceiptReceived) and event.commitment_id == self.cid:
                    if event.index == 0:
                        self.committed.set()
                        continue
                    now = clock()
                    sent_at, latencies = self.sent_at, self.latencies
                    for index in range(self.acked + 1, event.index + 1):
                        latencies.append(now - sent_at[index])
                    self.acked = max(self.acked, event.index)
                    self.paid = max(self.paid, event.amount)
                    self.receipts += 1
                    self.last_receipt = now
                    self.progress.set()
                elif isinstance(event, CertificateReceived):
                    self.certified.set()
                elif isinstance(event, OfferReceived) and event.vendor == self.vendor:
                    self.offered.set()
                elif isinstance(event, MessageRejected):
                    self.errors.append(f"{self.conf.account} rejected a message: {event.error}")
                    self.progress.set()
                elif isinstance(event, PeerError):
                    self.errors.append(f"{event.peer} refused: {event.code} {event.detail}")
                    self.progress.set()

    async def setup(self, vendor: str, max_length: int) -> None:
        """Enroll, read the vendor's offer, commit, and pre-compute every payment."""
        self.vendor = vendor
        await self.link.subscribe(self.core.subscriptions())
        self.core.enroll(bytes.fromhex(self.conf.token), time.time())
        await self._send_queued()
        async with asyncio.timeout(READY_TIMEOUT):
            await self.certified.wait()
            await self.offered.wait()
        count = self.conf.payments
        opened = self.core.open_channel(vendor, min(count, max_length), time.time())
        self.cid = opened.commitment_id
        await self._send_queued()
        async with asyncio.timeout(READY_TIMEOUT):
            await self.committed.wait()
        if self.errors:
            raise BenchError("; ".join(self.errors))
        now = time.time()
        for _ in range(count):
            self.core.pay(self.cid, 1, now)
            (out,) = self.core.data_to_send()
            self.payloads.append(out.payload)
            self.topic = out.topic
        self.sent_at = array("d", bytes(8 * (count + 1)))

    async def run(self, rate: float) -> None:
        """Publish as the receipts allow: at most ``window`` payments beyond the last one.

        With a ``rate``, payment ``i`` also waits for its time, ``i / rate`` seconds after
        the first (the event loop's timer granularity is about a millisecond, so payments
        leave in small groups at that pace).
        """
        link, window = self.link, self.window
        publish, has_room = link.publish_nowait, link.has_room
        payloads, sent_at, topic, clock = self.payloads, self.sent_at, self.topic, time.monotonic
        count = len(payloads)
        started = self.first_publish = clock()
        while self.acked < count:
            if self.errors:
                raise BenchError("; ".join(self.errors[:5]))
            limit = min(count, self.acked + window)
            paced = limit
            if rate:
                paced = min(limit, int((clock() - started) * rate) + 1)
            index = self.sent
            while index < paced and has_room():
                sent_at[index + 1] = clock()
                publish(topic, payloads[index])  # a refused one stalls the receipts: reported
                index += 1
            self.sent = index
            if index < paced:  # the server's Receive Maximum, not the vendor, holds us back
                await link.room()
            elif paced < limit:  # ahead of the pace: sleep until the next payment is due
                await asyncio.sleep(max(0.0, started + index / rate - clock()))
            else:
                self.progress.clear()
                try:
                    async with asyncio.timeout(STALL_TIMEOUT):
                        await self.progress.wait()
                except TimeoutError as exc:
                    raise BenchError(
                        f"{self.conf.account}: no receipt for {STALL_TIMEOUT} s "
                        f"(sent {self.sent}, acknowledged {self.acked})"
                    ) from exc


def write_latencies(path: Path, parts: list[array[float]]) -> None:
    """Every payment's latency in seconds, as native doubles."""
    with path.open("wb") as out:
        for part in parts:
            part.tofile(out)


async def load_worker(conf: LoadConf) -> None:
    """Buyers in one process: set up, say ready, wait for ``go``, pay, report."""
    stdin = await stdin_lines()
    info = read_broker_public(Path(conf.broker_public))
    buyers = [LoadBuyer(b, conf.port, info, conf.window) for b in conf.buyers]
    async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as tasks:
        for buyer in buyers:
            await stack.enter_async_context(buyer.link)
        readers = [tasks.create_task(b.receive(), name=b.conf.account) for b in buyers]
        await asyncio.gather(*(b.setup(conf.vendor, 10**9) for b in buyers))
        emit(Ready(os.getpid(), len(buyers[0].payloads[0])))
        if not await wait_for_go(stdin):
            for reader in readers:
                reader.cancel()
            return
        started = cpu_seconds()
        await asyncio.gather(*(b.run(conf.rate / len(buyers)) for b in buyers))
        used = cpu_seconds() - started
        for reader in readers:
            reader.cancel()
    write_latencies(Path(conf.latency_file), [b.latencies for b in buyers])
    emit(
        LoadReport(
            len(buyers),
            sum(len(b.payloads) for b in buyers),
            sum(b.acked for b in buyers),
            sum(b.paid for b in buyers),
            sum(b.receipts for b in buyers),
            sum(len(b.errors) for b in buyers),
            [e for b in buyers for e in b.errors][:10],
            min(b.first_publish for b in buyers),
            max(b.last_receipt for b in buyers),
            used,
        )
    )


# --- workers: the raw pipe -----------------------------------------------------------------


async def raw_subscriber(conf: RawConf) -> None:
    """Read ``count`` messages through the client under test; optionally ack cumulatively.

    With a window, a cumulative count goes back (in its own task, as ``AgentLoop`` does)
    whenever nothing more is waiting or 512 messages were read, like a coalesced receipt.
    Each message's first 8 bytes are its publish time: the arrival latencies are reported.
    """
    link = open_link(conf.mqtt.settings())
    me = conf.mqtt.username
    ack_topic = topics.inbox(conf.peer, me)
    pending: set[asyncio.Task[None]] = set()
    latencies = array("d")
    stamp = STAMP.unpack_from
    async with link:
        await link.subscribe([topics.inbox_filter(me)])
        emit(Ready(os.getpid()))
        count = acks = since_ack = 0
        first = last = started = 0.0
        clock = time.monotonic
        async with asyncio.timeout(READY_TIMEOUT + STALL_TIMEOUT + conf.count / 500):
            async for _topic, payload in link.messages():
                count += 1
                now = clock()
                latencies.append(now - stamp(payload)[0])
                if count == 1:
                    first, started = now, cpu_seconds()
                since_ack += 1
                if conf.window and (since_ack >= 512 or link.pending() == 0):
                    task = asyncio.create_task(link.publish(ack_topic, count.to_bytes(8, "big")))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    acks += 1
                    since_ack = 0
                if count >= conf.count:
                    last = now
                    break
        used = cpu_seconds() - started
        if pending:
            await asyncio.wait(pending, timeout=10)
    ordered = sorted(latencies)
    emit(
        RawReport(
            count,
            first,
            last,
            used,
            acks,
            percentile(ordered, 0.5) * 1e3,
            percentile(ordered, 0.99) * 1e3,
        )
    )


class RawSender:
    """The raw pipe's publishing side (the fast client): one-way, or within a window of acks."""

    def __init__(self, conf: RawConf, link: Mqtt5Link) -> None:
        self.conf = conf
        self.link = link
        self.topic = topics.inbox(conf.peer, conf.mqtt.username)
        self.bodies = [os.urandom(conf.size - STAMP.size) for _ in range(256)]
        self.acked = 0
        self.progress = asyncio.Event()

    async def read_acks(self) -> None:
        """Cumulative counts from the subscriber."""
        async for _topic, payload in self.link.messages():
            self.acked = max(self.acked, int.from_bytes(payload, "big"))
            self.progress.set()

    async def send_all(self) -> int:
        """Publish every message; return once the broker acknowledged the last one."""
        conf, bodies, topic, link = self.conf, self.bodies, self.topic, self.link
        publish, has_room, stamp, clock = (
            link.publish_nowait,
            link.has_room,
            STAMP.pack,
            time.monotonic,
        )
        last: asyncio.Future[None] | None = None
        sent = 0
        while sent < conf.count:
            limit = min(conf.count, self.acked + conf.window) if conf.window else conf.count
            while sent < limit and has_room():
                last = publish(topic, stamp(clock()) + bodies[sent & 255])
                sent += 1
            if sent < limit:
                await link.room()
            elif sent < conf.count:
                self.progress.clear()
                async with asyncio.timeout(STALL_TIMEOUT):
                    await self.progress.wait()
        if last is not None:
            await last
        return sent


async def raw_publisher(conf: RawConf) -> None:
    """Publish ``count`` plain messages when told ``go``; report; wait to be stopped."""
    stdin = await stdin_lines()
    link = Mqtt5Link(conf.mqtt.settings())
    sender = RawSender(conf, link)
    async with link, asyncio.TaskGroup() as tasks:
        await link.subscribe([topics.inbox_filter(conf.mqtt.username)])
        reader = tasks.create_task(sender.read_acks())
        emit(Ready(os.getpid()))
        if not await wait_for_go(stdin):
            reader.cancel()
            return
        started, first = cpu_seconds(), time.monotonic()
        async with asyncio.timeout(STALL_TIMEOUT + conf.count / 500):
            sent = await sender.send_all()
        last, used = time.monotonic(), cpu_seconds() - started
        emit(RawReport(sent, first, last, used, sender.acked))
        await wait_for_go(stdin)  # stay connected until the orchestrator is done
        reader.cancel()


def run_worker(role: str, raw_conf: str) -> int:
    """Entry point of a worker process (``--worker ROLE CONFIG``)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        if role == "broker":
            asyncio.run(broker_worker(msgspec.json.decode(raw_conf, type=BrokerConf)))
        elif role == "vendor":
            asyncio.run(vendor_worker(msgspec.json.decode(raw_conf, type=VendorConf)))
        elif role == "load":
            asyncio.run(load_worker(msgspec.json.decode(raw_conf, type=LoadConf)))
        elif role == "raw-sub":
            asyncio.run(raw_subscriber(msgspec.json.decode(raw_conf, type=RawConf)))
        elif role == "raw-pub":
            asyncio.run(raw_publisher(msgspec.json.decode(raw_conf, type=RawConf)))
        else:
            raise BenchError(f"unknown worker role {role!r}")
    except BaseException as exc:  # noqa: BLE001 - reported to the orchestrator, then exit
        if isinstance(exc, KeyboardInterrupt):
            return 130
        emit(Failed("".join(traceback.format_exception(exc))))
        return 1
    return 0


# --- the orchestrator ----------------------------------------------------------------------


class Worker:
    """A worker process in its own session; talks JSON lines on stdout, listens on stdin."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @classmethod
    async def start(cls, name: str, role: str, conf: msgspec.Struct, logs: Path) -> Worker:
        """Start ``python vendor_throughput.py --worker ROLE CONFIG``."""
        log = logs / f"{name}.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                SCRIPT,
                "--worker",
                role,
                msgspec.json.encode(conf).decode(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the workers in order
            )
        return cls(name, process, log)

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def _failure(self, what: str) -> BenchError:
        tail = self.log.read_text(errors="replace").splitlines()[-25:] if self.log.exists() else []
        return BenchError("\n".join([f"{self.name}: {what}", *tail]))

    async def expect(self, kind: type[T], timeout: float) -> T:  # noqa: ASYNC109
        """The next message, which must be a ``kind``."""
        assert self.process.stdout is not None  # noqa: S101 - created with PIPE
        try:
            async with asyncio.timeout(timeout):
                line = await self.process.stdout.readline()
        except TimeoutError:
            raise self._failure(f"no {kind.__name__} within {timeout:.0f} s") from None
        if not line:
            code = await self.process.wait()
            raise self._failure(f"exited ({code}) before sending {kind.__name__}")
        message = _decoder.decode(line)
        if isinstance(message, Failed):
            raise BenchError(f"{self.name} failed:\n{message.error}")
        if not isinstance(message, kind):
            raise self._failure(f"sent {type(message).__name__}, expected {kind.__name__}")
        return message

    def send(self, line: str) -> None:
        """One command line (``go``)."""
        assert self.process.stdin is not None  # noqa: S101 - created with PIPE
        self.process.stdin.write(line.encode() + b"\n")

    async def stop(self, timeout: float = 20.0) -> None:  # noqa: ASYNC109
        """SIGTERM (the daemons stop cleanly on it), SIGKILL after ``timeout``."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
        try:
            async with asyncio.timeout(timeout):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


def thread_cpu_seconds(pid: int) -> tuple[float, float]:
    """(main thread, all other threads) CPU seconds of a process, from /proc."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            raw = (task / "stat").read_text()
            fields = raw[raw.rindex(")") + 2 :].split()
            used = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            if int(task.name) == pid:
                main += used
            else:
                other += used
    return main, other


def machine_busy_seconds() -> float:
    """CPU time every process on this machine has used so far (/proc/stat, steal excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


def mosquitto_pid(files: MosquittoFiles) -> int | None:
    """The pid of the Mosquitto running from ``files`` (found by its config path)."""
    wanted = str(files.config).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if wanted in (entry / "cmdline").read_bytes().split(b"\0"):
                    return int(entry.name)
    return None


def read_latencies(paths: list[Path]) -> list[float]:
    """Every payment's latency (seconds) written by the load processes, sorted."""
    latencies = array("d")
    for path in paths:
        latencies.frombytes(path.read_bytes())
    return sorted(latencies)


def cpu_probe_ms() -> float:
    """How long this machine takes for a fixed piece of CPU work now (noisy hosts vary)."""
    digest, data = hashlib.sha256, b"x" * 32
    started = time.perf_counter()
    for _ in range(PROBE_HASHES):
        digest(data).digest()
    return (time.perf_counter() - started) * 1e3


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run."""

    payments: int
    rounds: int
    clients: tuple[ClientName, ...]
    buyer_counts: tuple[int, ...]
    load_processes: int
    windows: dict[int, int]
    pin: bool
    profile: bool
    paced: bool = True

    def processes_for(self, buyers: int) -> int:
        """Load processes for a case (one buyer needs one)."""
        return 1 if buyers == 1 else min(self.load_processes, buyers)

    def case_tags(self) -> list[str]:
        """Every vendor case of a client in a round: ``16b``, and ``half`` (1 buyer paced)."""
        tags = [f"{b}b" for b in self.buyer_counts]
        if self.paced and 1 in self.buyer_counts:
            tags.append("half")
        return tags


class Foreign:
    """How much CPU processes other than ours used on this machine during a measurement."""

    def __init__(self, bench: Bench, *pids: int) -> None:
        self.bench = bench
        self.pids = pids
        self.machine = machine_busy_seconds()
        self.ours = bench.own_cpu(*pids)
        self.started = time.monotonic()

    def cores(self, reported: float) -> float:
        """Cores' worth used by others; ``reported`` is what workers that exited measured."""
        machine = machine_busy_seconds() - self.machine
        ours = self.bench.own_cpu(*self.pids) - self.ours + reported
        return max(0.0, machine - ours) / (time.monotonic() - self.started)


# --- profiling the vendor --------------------------------------------------------------------

PROFILE_RATE: Final = 250  # py-spy samples per second


def is_main_thread(frame: str) -> bool:
    """Whether a py-spy ``--threads`` root frame is a process's main (event-loop) thread."""
    return "MainThread" in frame or ("main" in frame.lower() and "thread" in frame.lower())


# --- the orchestrator's bench ----------------------------------------------------------------


class Bench:
    """Runs every case against one Mosquitto and one broker daemon; cleans everything up."""

    def __init__(self, root: Path, plan: Plan, say: Callable[[str], None]) -> None:
        self.root = root
        self.plan = plan
        self.say = say
        self.logs = root / "logs"
        self.logs.mkdir()
        self.port = free_port()
        self.files = render(root / "mosquitto", self.port)
        self.mosquitto = MosquittoProcess(self.files, self.port)
        self.mosquitto_pid: int | None = None
        self.passwords: dict[str, str] = {}
        self.workers: list[Worker] = []
        self.samplers: list[asyncio.subprocess.Process] = []
        self.broker_dir = root / "broker"
        self.payload_size = 0
        self.round = 0
        self.broker_pid: int | None = None
        cpus = sorted(os.sched_getaffinity(0))
        self.alone = {cpus[-1]}
        self.others = set(cpus[:-1]) or self.alone

    # --- plumbing ---------------------------------------------------------------------------

    def conf(self, user: str, *, clean: bool = True, client: ClientName = "mqtt5") -> MqttConf:
        """Connection settings of an MQTT user created at start (the fast client unless told)."""
        return MqttConf(self.port, user, self.passwords[user], clean, client)

    def case_key(self, client: str, tag: str, round_: int | None = None) -> str:
        """A case's name, fresh in every round: ``r0-mqtt5-16b``."""
        return f"r{self.round if round_ is None else round_}-{client}-{tag}"

    @staticmethod
    def buyer_name(key: str, index: int) -> str:
        """A buyer account of a case."""
        return f"{key}-buyer{index:02d}"

    def users(self) -> list[str]:
        """Every MQTT user the run needs (created before Mosquitto starts: no reloads)."""
        names = [BROKER_ID, "rawpub", *(f"rawsub-{c}" for c in self.plan.clients)]
        for round_ in range(self.plan.rounds):
            for client in self.plan.clients:
                for tag in self.plan.case_tags():
                    key = self.case_key(client, tag, round_)
                    buyers = 1 if tag == "half" else int(tag.removesuffix("b"))
                    names.append(f"{key}-vendor")
                    names.extend(self.buyer_name(key, i) for i in range(1, buyers + 1))
        return names

    def pin(self, pid: int | None, *, alone: bool) -> None:
        """With ``--pin``: the measured process on the last CPU, everything else elsewhere."""
        if self.plan.pin and pid is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, self.alone if alone else self.others)

    async def start(self) -> None:
        """Mosquitto, then the broker daemon."""
        for user in self.users():
            self.passwords[user] = generated_password()
            add_user(self.files, user, self.passwords[user])
        self.mosquitto.start()
        self.mosquitto_pid = mosquitto_pid(self.files)
        self.pin(self.mosquitto_pid, alone=False)
        await init_broker(self.broker_dir, BROKER_ID)
        broker = await self.spawn(
            "broker",
            "broker",
            BrokerConf(str(self.broker_dir), self.conf(BROKER_ID, clean=False)),
            alone=False,
        )
        await broker.expect(Ready, READY_TIMEOUT)
        self.broker_pid = broker.pid

    async def spawn(self, name: str, role: str, conf: msgspec.Struct, *, alone: bool) -> Worker:
        """Start a worker and keep it for cleanup."""
        worker = await Worker.start(name, role, conf, self.logs)
        self.workers.append(worker)
        self.pin(worker.pid, alone=alone)
        return worker

    async def retire(self, *workers: Worker) -> None:
        """Stop workers and forget them."""
        await asyncio.gather(*(w.stop() for w in workers))
        for worker in workers:
            self.workers.remove(worker)

    async def close(self) -> None:
        """Stop the samplers, every worker (the broker last), then Mosquitto."""
        for sampler in self.samplers:
            with contextlib.suppress(ProcessLookupError):
                sampler.kill()
            await sampler.wait()
        self.samplers.clear()
        for worker in reversed(self.workers):
            with contextlib.suppress(Exception):
                await worker.stop()
        self.workers.clear()
        self.mosquitto.stop()

    def own_cpu(self, *pids: int) -> float:
        """CPU seconds of this orchestrator, Mosquitto, the broker daemon and ``pids``."""
        times = os.times()
        used = times.user + times.system
        for pid in (self.mosquitto_pid, self.broker_pid, *pids):
            if pid is not None:
                with contextlib.suppress(OSError):
                    used += sum(thread_cpu_seconds(pid))
        return used

    def mosquitto_cpu(self) -> float:
        """Mosquitto's CPU seconds so far (0 if it cannot be found)."""
        if self.mosquitto_pid is None:
            return 0.0
        with contextlib.suppress(OSError):
            return sum(thread_cpu_seconds(self.mosquitto_pid))
        return 0.0

    async def operator(self, request: Asks[GrantedT]) -> GrantedT:
        """An operator request through the broker daemon's admin socket."""
        answer = await operator_request(self.broker_dir, request)
        if isinstance(answer, Refused):
            raise BenchError(f"operator request {request} refused: {answer}")
        return answer

    async def open_account(self, account: str, role: AccountRole, credit: int) -> str:
        """Open an account; its enrollment token (hex)."""
        answer = await self.operator(OpenAccount(account=account, role=role, credit_limit=credit))
        return answer.token

    async def credited(self) -> int:
        """Everything the broker has credited to vendors so far."""
        return (await self.operator(Status())).credited

    async def start_sampler(self, pid: int, output: Path) -> asyncio.subprocess.Process | None:
        """py-spy on the vendor, if installed and asked for."""
        program = shutil.which("py-spy")
        if not self.plan.profile or program is None:
            return None
        with (self.logs / "py-spy.log").open("ab") as log:
            sampler = await asyncio.create_subprocess_exec(
                program,
                *("record", "--pid", str(pid), "--rate", str(PROFILE_RATE), "--threads"),
                *("--format", "raw", "--output", str(output)),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.samplers.append(sampler)
        self.pin(sampler.pid, alone=False)
        await asyncio.sleep(0.5)  # attached
        return sampler

    async def stop_sampler(self, sampler: asyncio.subprocess.Process | None) -> None:
        """SIGINT makes py-spy write its samples."""
        if sampler is None:
            return
        with contextlib.suppress(ProcessLookupError):
            sampler.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(30):
                await sampler.wait()
        except TimeoutError:
            sampler.kill()
            await sampler.wait()
        self.samplers.remove(sampler)

    # --- (a) --------------------------------------------------------------------------------

    async def raw(self, client: ClientName, window: int) -> Raw:
        """One raw-pipe run, ``client`` subscribing: ``window`` 0 is one-way."""
        count = self.plan.payments if window else min(self.plan.payments, RAW_QUEUE_LIMIT)
        size = self.payload_size
        subscriber = f"rawsub-{client}"
        sub = await self.spawn(
            f"raw-sub-{client}",
            "raw-sub",
            RawConf(
                self.conf(subscriber, clean=False, client=client), "rawpub", count, size, window
            ),
            alone=True,
        )
        await sub.expect(Ready, READY_TIMEOUT)
        pub = await self.spawn(
            "raw-pub",
            "raw-pub",
            RawConf(self.conf("rawpub"), subscriber, count, size, window),
            alone=False,
        )
        await pub.expect(Ready, READY_TIMEOUT)
        mosquitto_before = self.mosquitto_cpu()
        foreign = Foreign(self)
        pub.send("go")
        limit = STALL_TIMEOUT + count / 200
        got, sent = await asyncio.gather(sub.expect(RawReport, limit), pub.expect(RawReport, limit))
        mosquitto_used = self.mosquitto_cpu() - mosquitto_before
        foreign_cores = foreign.cores(got.cpu_s + sent.cpu_s)
        pub.send("go")
        await self.retire(sub, pub)
        if got.messages != count:
            raise BenchError(f"raw subscriber got {got.messages} of {count}")
        return Raw(
            "one-way" if not window else "acked",
            window,
            count,
            (count - 1) / (got.last - got.first),
            got.cpu_s / (count - 1) * 1e6,
            sent.messages / (sent.last - sent.first),
            sent.cpu_s / sent.messages * 1e6,
            mosquitto_used / count * 1e6,
            got.acks,
            foreign_cores,
            got.latency_p50_ms,
            got.latency_p99_ms,
        )

    # --- (b) to (e) -------------------------------------------------------------------------

    async def start_vendor(self, name: str, client: ClientName, max_length: int) -> Worker:
        """Open the vendor's account, start its daemon, wait until it is enrolled."""
        token = await self.open_account(name, "vendor", 0)
        profile = ""
        if self.plan.profile and shutil.which("py-spy") is None:
            profile = str(self.root / f"{name}.prof")
        conf = VendorConf(
            str(self.root / name),
            name,
            str(self.broker_dir / PUBLIC_FILE),
            self.conf(name, clean=False, client=client),
            token,
            max_length,
            profile,
        )
        vendor = await self.spawn(name, "vendor", conf, alone=True)
        await vendor.expect(Ready, READY_TIMEOUT)
        return vendor

    async def start_loads(
        self, key: str, vendor: str, counts: list[int], rate: float
    ) -> tuple[list[Worker], list[Path]]:
        """Open the buyers' accounts; start the load processes; wait until all committed."""
        confs: list[BuyerConf] = []
        for index, count in enumerate(counts, start=1):
            account = self.buyer_name(key, index)
            token = await self.open_account(account, "buyer", CREDIT)
            confs.append(BuyerConf(account, self.passwords[account], token, count))
        loads: list[Worker] = []
        files: list[Path] = []
        buyers = len(counts)
        processes = self.plan.processes_for(buyers)
        for number in range(processes):
            mine = confs[number::processes]
            files.append(self.root / f"latency-{key}-{number}.bin")
            conf = LoadConf(
                self.port,
                str(self.broker_dir / PUBLIC_FILE),
                vendor,
                mine,
                self.plan.windows[buyers],
                str(files[-1]),
                rate * len(mine) / buyers,
            )
            loads.append(await self.spawn(f"load-{key}-{number}", "load", conf, alone=False))
        readies = await asyncio.gather(*(w.expect(Ready, READY_TIMEOUT) for w in loads))
        self.payload_size = self.payload_size or readies[0].payload_size
        return loads, files

    async def case(self, client: ClientName, buyers: int, payments: int, rate: float = 0.0) -> Case:
        """One vendor on ``client`` paid by ``buyers`` buyers (paced at ``rate`` if given)."""
        share, extra = divmod(payments, buyers)
        counts = [share + (1 if i < extra else 0) for i in range(buyers)]
        key = self.case_key(client, "half" if rate else f"{buyers}b")
        name = f"{key}-vendor"
        vendor = await self.start_vendor(name, client, max(counts))
        loads, latency_files = await self.start_loads(key, name, counts, rate)

        credited_before = await self.credited()
        sampler = await self.start_sampler(vendor.pid, self.root / f"{name}.pyspy")
        main_before, threads_before = thread_cpu_seconds(vendor.pid)
        mosquitto_before = self.mosquitto_cpu()
        foreign = Foreign(self, vendor.pid)
        for load in loads:
            load.send("go")
        limit = STALL_TIMEOUT + payments / 200 + (payments / rate if rate else 0)
        reports = await asyncio.gather(*(w.expect(LoadReport, limit) for w in loads))
        main_after, threads_after = thread_cpu_seconds(vendor.pid)
        mosquitto_used = self.mosquitto_cpu() - mosquitto_before
        foreign_cores = foreign.cores(sum(r.cpu_s for r in reports))
        await self.stop_sampler(sampler)
        await self.retire(*loads)

        await vendor.stop()
        vendor_report = await vendor.expect(VendorReport, 5)
        self.workers.remove(vendor)
        store = await VendorStore.open(self.root / name / STORE_FILE)
        try:
            stored_total, stored_chains = await store.totals()
        finally:
            await store.close()
        credited = await self.credited() - credited_before

        ordered = read_latencies(latency_files)
        seconds = max(r.last_receipt for r in reports) - min(r.first_publish for r in reports)
        acknowledged = sum(r.acknowledged for r in reports)
        per_payment = 1e6 / max(acknowledged, 1)
        main_us = (main_after - main_before) * per_payment
        threads_us = (threads_after - threads_before) * per_payment
        profile: list[str] = []
        if sampler is not None:
            profile = summarize_py_spy(self.root / f"{name}.pyspy", main_us, is_main_thread)
        elif self.plan.profile:
            profile = summarize_cprofile(self.root / f"{name}.prof")
        return Case(
            buyers=buyers,
            load_processes=len(loads),
            window=self.plan.windows[buyers],
            payments=sum(r.payments for r in reports),
            acknowledged=acknowledged,
            seconds=seconds,
            rate=acknowledged / seconds,
            vendor_cpu_us=main_us + threads_us,
            vendor_main_us=main_us,
            vendor_threads_us=threads_us,
            vendor_busy=(main_us + threads_us) * acknowledged / 1e6 / seconds,
            load_cpu_us=sum(r.cpu_s for r in reports) * per_payment,
            mosquitto_cpu_us=mosquitto_used * per_payment,
            foreign_cores=foreign_cores,
            latency_p50_ms=percentile(ordered, 0.50) * 1e3,
            latency_p99_ms=percentile(ordered, 0.99) * 1e3,
            latency_max_ms=percentile(ordered, 1.0) * 1e3,
            receipts=sum(r.receipts for r in reports),
            transactions=vendor_report.transactions,
            store_wait_share=vendor_report.store_wait_s / seconds,
            store_wait_ms=vendor_report.store_wait_s / max(vendor_report.store_waits, 1) * 1e3,
            queued_per_wait=vendor_report.queued_meanwhile / max(vendor_report.store_waits, 1),
            rejected=sum(r.rejected for r in reports) + vendor_report.rejected,
            paid=sum(r.paid for r in reports),
            stored_total=stored_total,
            stored_chains=stored_chains,
            broker_credited=credited,
            vendor_counted=vendor_report.amount,
            paced_rate=rate,
            errors=[e for r in reports for e in r.errors],
            profile=profile,
        )

    async def client_round(
        self, client: ClientName, prefix: str, probes: list[float]
    ) -> ClientRound:
        """Every vendor case of one client, its half-peak run, then its raw pipes."""
        plan = self.plan
        cases: list[Case] = []
        paced: Case | None = None
        for buyers in plan.buyer_counts:
            self.say(f"{prefix}[{client}] (b) {buyers} buyer(s), {plan.payments:,} payments ...")
            cases.append(await self.case(client, buyers, plan.payments))
            probes.append(cpu_probe_ms())
            if buyers == 1 and plan.paced:
                rate = cases[-1].rate * PACED_SHARE
                half = max(1, plan.payments // 2)
                self.say(f"{prefix}[{client}] (e) 1 buyer paced at {rate:,.0f}/s, {half:,} ...")
                paced = await self.case(client, 1, half, rate)
                probes.append(cpu_probe_ms())
        acked_window = plan.windows[plan.buyer_counts[0]] * plan.buyer_counts[0]
        raws: list[Raw] = []
        for window in (0, acked_window):
            what = "one-way" if not window else f"window {window}"
            self.say(f"{prefix}[{client}] (a) raw pipe, {what} ...")
            raws.append(await self.raw(client, window))
            probes.append(cpu_probe_ms())
        return ClientRound(client, cases, paced, raws)


async def run_all(plan: Plan, root: Path, say: Callable[[str], None]) -> Results:
    """Start everything; each round, for each client: the vendor cases, then the raw pipe."""
    main_task = asyncio.current_task()
    if main_task is not None:  # SIGTERM cleans up as Ctrl-C does
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    bench = Bench(root, plan, say)
    rounds: list[Round] = []
    try:
        await bench.start()
        for round_ in range(plan.rounds):
            bench.round = round_
            prefix = f"round {round_ + 1}/{plan.rounds}: " if plan.rounds > 1 else ""
            probes = [cpu_probe_ms()]
            clients = [await bench.client_round(c, prefix, probes) for c in plan.clients]
            rounds.append(Round(clients, probes))
        return Results(bench.payload_size, rounds)
    finally:
        await bench.close()


# --- output ----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """The software measured."""
    found = {"python": platform.python_version()}
    for name in ("mqtt5", "aiomqtt", "paho-mqtt"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    found["sqlite"] = sqlite3.sqlite_version
    with contextlib.suppress(Exception):
        done = subprocess.run(  # noqa: S603 - fixed program
            [binary(), "-h"], capture_output=True, text=True, check=False, timeout=5
        )
        found["mosquitto"] = (done.stdout or done.stderr).splitlines()[0].split()[-1]
    return found


def buyer_list(text: str) -> tuple[int, ...]:
    """``1,16`` -> (1, 16)."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a list of buyer counts: {text!r}") from exc
    if not counts or min(counts) < 1 or max(counts) > 99:
        raise argparse.ArgumentTypeError("buyer counts are 1..99")
    return counts


def default_window(buyers: int) -> int:
    """Payments in flight per buyer unless ``--window`` says otherwise."""
    return max(4, DEFAULT_WINDOW_TOTAL // buyers)


def client_list(text: str) -> tuple[ClientName, ...]:
    """``both`` -> every client; else one client's name."""
    if text == "both":
        return CLIENTS
    for name in CLIENTS:
        if text == name:
            return (name,)
    raise argparse.ArgumentTypeError(f"--client is one of {', '.join(CLIENTS)} or both")


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every case, print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="Starts Mosquitto, a broker daemon, a vendor and load processes on loopback,"
        " and stops them and removes its temporary directory on exit, Ctrl-C included."
        " Exit status 1 if any payment was rejected or the totals disagree.",
    )
    parser.add_argument(
        "--client",
        type=client_list,
        default=CLIENTS,
        metavar="{" + ",".join(CLIENTS) + ",both}",
        help="the MQTT client of the vendor and of the raw subscriber (default both, one"
        " after the other in each round); the load always uses mqtt5",
    )
    parser.add_argument(
        "--payments",
        type=int,
        help=f"payments per vendor case, split over its buyers, and messages per raw run"
        f" (default {DEFAULT_PAYMENTS:,}; with --quick {QUICK_PAYMENTS:,}; one-way raw runs"
        f" send at most {RAW_QUEUE_LIMIT:,}; the half-peak run half as many)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test of about a minute (both clients)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="repeat everything this many times and report medians (default 3: this host's"
        " speed drifts)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--buyers",
        type=buyer_list,
        default=(1, 16),
        help="the vendor cases, as buyer counts (default 1,16)",
    )
    parser.add_argument(
        "--no-paced",
        dest="paced",
        action="store_false",
        help="skip the run paced at half the 1-buyer peak (the p99 target's)",
    )
    parser.add_argument(
        "--window",
        type=int,
        help="payments in flight per buyer beyond its last receipt (default"
        f" {DEFAULT_WINDOW_TOTAL} / buyers: the vendor's Receive Maximum in all)",
    )
    parser.add_argument(
        "--load-processes",
        type=int,
        choices=(1, 2),
        default=DEFAULT_LOAD_PROCESSES,
        help=f"processes several buyers are split over (default {DEFAULT_LOAD_PROCESSES})",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the vendor (and the raw subscriber) alone on the last CPU, the rest elsewhere",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the vendor with py-spy if on PATH (else cProfile inside it) and print"
        " where its time goes; slows the vendor down",
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args.worker[0], args.worker[1])

    payments = args.payments or (QUICK_PAYMENTS if args.quick else DEFAULT_PAYMENTS)
    rounds = 1 if args.quick and "--rounds" not in (argv or sys.argv) else args.rounds
    if payments < max(args.buyers):
        parser.error("--payments must be at least the number of buyers")
    if args.window is not None and args.window < 1:
        parser.error("--window must be at least 1")
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    plan = Plan(
        payments=payments,
        rounds=rounds,
        clients=args.client,
        buyer_counts=args.buyers,
        load_processes=args.load_processes,
        windows={b: args.window or default_window(b) for b in args.buyers},
        pin=args.pin,
        profile=args.profile,
        paced=args.paced,
    )

    def say(text: str) -> None:
        if not args.json:
            print(text, file=sys.stderr, flush=True)

    info = versions()
    root = Path(tempfile.mkdtemp(prefix="micropay-vendor-bench-"))
    try:
        results = asyncio.run(run_all(plan, root, say))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every process stopped, temporary files removed", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"vendor_throughput failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(msgspec.json.encode(to_json(results, info, pinned=plan.pin)).decode())
    else:
        print(report(results, info, pinned=plan.pin))
    return 0 if results.consistent else 1


if __name__ == "__main__":
    sys.exit(main())
