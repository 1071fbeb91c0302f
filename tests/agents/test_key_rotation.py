"""Key rotation over a real Mosquitto, with the daemons and the ``keys rotate`` command.

The broker rotates (its daemon stopped, then started again) while a vendor daemon runs
and a buyer pays in short sessions: both keep their configuration and follow the new
key, across a restart too; a new enrollment gets a certificate naming the new key, an
old certificate still pays, the ledger audits across the rotation, and a forged
rotation is refused and logged. A buyer then rotates its own keys.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import pytest

from agents.cli.keys_rotate import add_rotate_parser
from agents.daemons.broker_files import read_public
from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.vendor_agent import VendorAgent
from broker_ledger.audit import LedgerAudit
from protocol import topics
from protocol.codec import decode_certificate, decode_signed
from protocol.envelope import Auth, seal
from protocol.key_rotation import sign_rotation
from protocol.messages import BrokerIdentity, KeyRotation
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker, Endpoint
from tests.agents.harness import Harness, wait_until
from tests.support.world import seeded_identity


def keys_rotate(*argv: str) -> int:
    """``micropay keys rotate ...`` through its own parser (the ``keys`` group is elsewhere)."""
    parser = argparse.ArgumentParser(prog="micropay keys")
    add_rotate_parser(parser.add_subparsers(dest="action", required=True))
    args = parser.parse_args(["rotate", *argv])
    code: int = args.handler(args)
    return code


async def pay(h: Harness, name: str, units: int) -> int:
    assert h.info is not None
    buyer = await BuyerAgent.open(h.root / name, name, h.info, h.mosquitto.user(name))
    result = await buyer.run(lambda: buyer.pay("vendor1", 1, units, length=100))
    assert result.acknowledged >= result.units  # cumulative on its chain
    return result.units


async def restart_broker(h: Harness) -> None:
    """Stop the daemon, rotate its key with the command, start it again."""
    assert h.daemon is not None
    await h.daemon.stop()
    await asyncio.wait_for(h.tasks.pop(0), 20)
    assert await asyncio.to_thread(keys_rotate, "broker", "--data-dir", str(h.root / "broker")) == 0
    await h.start_broker()


@pytest.mark.asyncio
async def test_agents_follow_a_broker_key_rotation_without_reconfiguration(
    tmp_path: Path, mosquitto: Broker
) -> None:
    h = Harness(tmp_path, mosquitto)
    await h.start_broker()
    first = h.info
    assert first is not None
    vendor = await h.start_vendor("vendor1")
    await h.enroll_buyer("buyer1")
    assert await pay(h, "buyer1", 3) == 3

    await restart_broker(h)
    await wait_until(lambda: vendor.core.broker_keys.generation == 1)
    new_key = vendor.core.broker_keys.current
    assert new_key != first.sign_key
    assert (tmp_path / "broker" / "broker.key.1").is_file()

    # the buyer, configured as before, pays on with its certificate from the first key
    assert await pay(h, "buyer1", 7) == 7
    # the rewritten broker.pub.json names the new key and vouches for the first
    rewritten = read_public(tmp_path / "broker" / "broker.pub.json")
    assert (rewritten.sign_key, len(rewritten.rotations)) == (new_key, 1)
    fresh = await BuyerAgent.open(
        tmp_path / "buyer1", "buyer1", rewritten, mosquitto.user("buyer1")
    )
    assert fresh.core.certified is not None  # its first-key certificate checks offline
    await fresh.store.close()
    # a new enrollment, still with the old broker.pub.json, is certified under the new key
    await h.enroll_buyer("buyer2")
    buyer2 = await h.buyer("buyer2")
    issuer_key = decode_certificate(decode_signed(buyer2.core.certificate).body).issuer_key
    await buyer2.store.close()
    assert issuer_key == new_key
    assert await pay(h, "buyer2", 5) == 5

    # a vendor restarted with the same configuration trusts the new key from its store
    await vendor.shutdown(within=5)
    await asyncio.wait_for(h.tasks.pop(0), 20)  # the vendor's (the broker's was restarted)
    del h.vendors["vendor1"]
    again = await VendorAgent.open(
        tmp_path / "vendor1", "vendor1", first, VendorTerms(), mosquitto.user("vendor1")
    )
    assert again.core.broker_keys.current == new_key
    assert again.core.certified is not None
    await again.store.close()

    await h.stop()
    for trusted in (first.sign_key, new_key):
        report = LedgerAudit(tmp_path / "broker" / "ledger.db", trusted).run()
        assert report.ok, report.findings
        assert report.key_rotations == 1
        assert report.credited == 15


@pytest.mark.asyncio
async def test_a_forged_rotation_is_refused_and_logged(
    tmp_path: Path, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path, mosquitto)
    await h.start_broker()
    assert h.info is not None
    vendor = await h.start_vendor("vendor1")
    # Someone with the broker's MQTT password, not its key, announces their own key.
    mallory, stranger = seeded_identity("mallory-broker"), seeded_identity("stranger")
    statement = KeyRotation(
        "broker", 1, stranger.sign_key, mallory.sign_key, h.info.agree_key, 9, 0
    )
    body = BrokerIdentity(
        "broker", mallory.sign_key, h.info.agree_key, [sign_rotation(stranger, mallory, statement)]
    )
    topic = topics.public("broker", "identity")
    payload = seal(
        topic,
        body,
        auth=Auth.SIGNED,
        sender="broker",
        recipient="*",
        counter=1,
        now=0,
        signer=mallory,
    )
    caplog.set_level(logging.INFO)
    rejected = vendor.loop.rejected
    async with Endpoint(mosquitto.port).client("broker") as client:
        await client.publish(topic, payload, qos=1)
    await wait_until(lambda: vendor.loop.rejected > rejected)
    assert vendor.loop.rejections["key-rotation"] == 1
    assert vendor.core.broker_keys.current == h.info.sign_key
    assert any("does not reach the configured key" in r.getMessage() for r in caplog.records)
    await h.stop()


@pytest.mark.asyncio
async def test_a_buyer_rotates_its_keys_with_its_old_key_as_authority(
    tmp_path: Path, mosquitto: Broker
) -> None:
    h = Harness(tmp_path, mosquitto)
    await h.start_broker()
    assert h.info is not None
    await h.start_vendor("vendor1")
    await h.enroll_buyer("buyer1")
    assert await pay(h, "buyer1", 4) == 4
    old_key = (tmp_path / "buyer1" / "agent.key").read_bytes()
    before = await h.buyer("buyer1")
    old_serial = before.core.certified.serial if before.core.certified else 0
    await before.store.close()
    password = tmp_path / "buyer1.password"
    password.write_text("pw-buyer1\n")
    password.chmod(0o600)

    argv = (
        "buyer", "--data-dir", str(tmp_path / "buyer1"), "--name", "buyer1",
        "--broker-pub", str(tmp_path / "broker" / "broker.pub.json"),
        "--mqtt-port", str(mosquitto.port), "--mqtt-password-file", str(password),
    )  # fmt: skip
    assert await asyncio.to_thread(keys_rotate, *argv) == 0
    assert (tmp_path / "buyer1" / "agent.key").read_bytes() != old_key
    assert not (tmp_path / "buyer1" / "agent.key.next").exists()

    buyer = await h.buyer("buyer1")
    certified = buyer.core.certified
    await buyer.store.close()
    assert certified is not None
    assert certified.serial > old_serial
    assert h.daemon is not None
    assert old_serial in h.daemon.service.core.revoked
    # the old chain ended; a new one is opened under the new certificate, and pays
    assert await pay(h, "buyer1", 6) == 6
    await h.stop()
    report = LedgerAudit(tmp_path / "broker" / "ledger.db", h.info.sign_key).run()
    assert report.ok, report.findings
    assert report.credited == 10


@pytest.mark.asyncio
async def test_a_vendor_rotates_its_keys_and_buyers_open_new_chains(
    tmp_path: Path, mosquitto: Broker
) -> None:
    h = Harness(tmp_path, mosquitto)
    await h.start_broker()
    assert h.info is not None
    vendor = await h.start_vendor("vendor1")
    await h.enroll_buyer("buyer1")
    assert await pay(h, "buyer1", 4) == 4
    await vendor.shutdown(within=5)  # redeems the 4 units it holds
    await asyncio.wait_for(h.tasks.pop(), 20)
    del h.vendors["vendor1"]

    password = tmp_path / "vendor1.password"
    password.write_text("pw-vendor1\n")
    password.chmod(0o600)
    argv = (
        "vendor", "--data-dir", str(tmp_path / "vendor1"), "--name", "vendor1",
        "--broker-pub", str(tmp_path / "broker" / "broker.pub.json"),
        "--mqtt-port", str(mosquitto.port), "--mqtt-password-file", str(password),
    )  # fmt: skip
    assert await asyncio.to_thread(keys_rotate, *argv) == 0

    again = await VendorAgent.open(
        tmp_path / "vendor1", "vendor1", h.info, VendorTerms(), mosquitto.user("vendor1")
    )
    h.tasks.append(asyncio.create_task(again.run()))
    h.vendors["vendor1"] = again
    await wait_until(again.loop.connected.is_set)
    # the buyer's chain was keyed with the vendor's old agreement key: it opens a new one
    assert await pay(h, "buyer1", 6) == 6
    await h.stop()
    report = LedgerAudit(tmp_path / "broker" / "ledger.db", h.info.sign_key).run()
    assert report.ok, report.findings
    assert report.credited == 10
