"""``micropay buyer pay V1 V2`` subscribes to its inbox, the broker's broadcasts and the
offers of V1 and V2: nothing else, as Mosquitto itself logs it.

A device paying one vendor should not be sent every vendor's offer (docs/PROTOCOL.md 16.4).
Mosquitto runs from the project's configuration with subscriptions logged; the broker and
the vendors run in process, the buyer as the command a user types.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.ops.mosquitto import MosquittoProcess, add_user, free_port, render
from protocol import topics
from protocol.buyer import BuyerCore
from protocol.errors import LocalProtocolError
from tests.agents.conftest import USERS, Broker
from tests.agents.harness import Harness
from tests.support.world import make_world, seeded_identity

CONNECTED = re.compile(r"New client connected from \S+ as (\S+) \(p\d, c(\d)")
SUBSCRIBED = re.compile(r"^\d+: (\S+) \d (\S+)$")


@pytest.fixture
def logging_mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """The ``mosquitto`` fixture's broker, with every subscription in its log."""
    port = free_port()
    files = render(tmp_path / "mosquitto", port)
    with files.config.open("a") as config:
        config.write("log_type subscribe\nlog_type unsubscribe\n")
    for name in USERS:
        add_user(files, name, f"pw-{name}")
    process = MosquittoProcess(files, port)
    process.start()
    try:
        yield Broker(files, process, port, {name: f"pw-{name}" for name in USERS})
    finally:
        process.stop()


def last_session(log: Path, client: str) -> tuple[bool, set[str]]:
    """Whether ``client``'s last connection started clean, and what it subscribed to."""
    clean, filters = False, set[str]()
    for line in log.read_text().splitlines():
        if (connected := CONNECTED.search(line)) and connected[1] == client:
            clean, filters = connected[2] == "1", set()
        elif (subscribed := SUBSCRIBED.match(line)) and subscribed[1] == client:
            filters.add(subscribed[2])
    return clean, filters


async def pay_by_command(root: Path, mosquitto: Broker, *vendors: str) -> list[dict[str, object]]:
    """``micropay buyer pay`` as a separate process, as a user runs it."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agents.cli.main", "buyer", "pay", *vendors),
        *("--name", "buyer1", "--broker-pub", str(root / "broker" / "broker.pub.json")),
        *("--data-dir", str(root / "buyer1"), "--payments", "3", "--timeout", "30"),
        env={
            **os.environ,
            "MICROPAY_MQTT_PORT": str(mosquitto.port),
            "MICROPAY_MQTT_PASSWORD": mosquitto.passwords["buyer1"],
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, err.decode()[-2000:]
    answers: list[dict[str, object]] = json.loads(out)
    return answers


@pytest.mark.asyncio
async def test_a_paying_buyer_reads_its_inbox_the_broker_and_the_offers_it_pays(
    tmp_path: Path, logging_mosquitto: Broker
) -> None:
    harness = Harness(tmp_path, logging_mosquitto)
    try:
        await harness.start_broker()
        for vendor in ("vendor1", "vendor2"):
            await harness.start_vendor(vendor)
        await harness.enroll_buyer("buyer1")  # its session subscribed to every offer
        log = logging_mosquitto.process.log
        assert topics.public_filter("offer") in last_session(log, "buyer1")[1]

        answers = await pay_by_command(tmp_path, logging_mosquitto, "vendor1", "vendor2")
        assert [(a["vendor"], a["acknowledged_index"]) for a in answers] == [
            ("vendor1", 3),
            ("vendor2", 3),
        ]
        clean, filters = last_session(log, "buyer1")
    finally:
        await harness.stop()
    assert clean  # no subscription of an earlier session survives into this one
    assert filters == {
        "micropay/v1/in/buyer1/+",
        "micropay/v1/pub/broker/identity",
        "micropay/v1/pub/broker/revocations",
        "micropay/v1/pub/broker/ledger-head",
        "micropay/v1/pub/vendor1/offer",
        "micropay/v1/pub/vendor2/offer",
    }


def test_the_buyer_core_reads_every_offer_unless_given_its_vendors() -> None:
    keys = seeded_identity("buyer1")
    info = make_world(vendors=0, buyers=0).broker.info
    general = BuyerCore("buyer1", keys, info).subscriptions()
    assert general[-1] == "micropay/v1/pub/+/offer"
    device = BuyerCore("buyer1", keys, info, offers_from=["vendor7"]).subscriptions()
    assert device == [*general[:-1], "micropay/v1/pub/vendor7/offer"]
    with pytest.raises(LocalProtocolError):
        BuyerCore("buyer1", keys, info, offers_from=["+"])
