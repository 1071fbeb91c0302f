"""What a person running the agents by hand is told, and how soon.

Each refusal reaches the command as what it is, with the numbers, within seconds: a wrong
MQTT password, a vendor that is not there, a revoked certificate, a credit limit, an item
the vendor does not offer or a payment below its price. Real agents, a real Mosquitto, the
``micropay`` command itself where a person would type it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio

from agents.cli.main import main
from agents.daemons.broker_files import init_broker
from agents.daemons.buyer_agent import BuyerError
from agents.daemons.operator_client import operator_request
from agents.daemons.operator_protocol import Revoke, Revoked
from agents.daemons.vendor_agent import VendorAgent
from agents.ops.mosquitto import free_port
from agents.runtime.mqtt import MqttRefusedError, MqttSettings
from protocol.messages import OfferItem
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker
from tests.agents.harness import Harness

WRONG = "not-the-password"
PRICED = VendorTerms(redeem_interval=3600, items=(OfferItem("coffee", 150),))


@pytest_asyncio.fixture
async def kiosk(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[Harness]:
    """A broker and vendor1 selling coffee at 150 (redeeming only when told)."""
    harness = Harness(tmp_path, mosquitto)
    await harness.start_broker()
    await harness.start_vendor("vendor1", PRICED)
    try:
        yield harness
    finally:
        await harness.stop()


async def micropay(harness: Harness, *argv: str) -> tuple[int, str, str]:
    """``micropay buyer ...`` as buyer1 types it: (exit code, stdout, stderr)."""
    common = ["--name", "buyer1", "--data-dir", str(harness.root / "buyer1")]
    common += ["--broker-pub", str(harness.root / "broker" / "broker.pub.json")]
    common += ["--mqtt-port", str(harness.mosquitto.port), "--log-level", "error"]
    return await asyncio.to_thread(cli, [*argv, *common])


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run the command in-process, its output captured (a thread: it runs its own loop)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as usage:  # argparse's own exit, 2 for a usage error
            code = int(usage.code or 0)
    return code, out.getvalue(), err.getvalue()


async def timed(work: object) -> tuple[BaseException | None, float]:
    """Await ``work``; what it raised (``None`` if nothing) and how long it took."""
    assert asyncio.iscoroutine(work)
    started = time.monotonic()
    try:
        await work
    except (BuyerError, MqttRefusedError) as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.fixture(autouse=True)
def buyer_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROPAY_MQTT_PASSWORD", "pw-buyer1")


@pytest.mark.asyncio
async def test_a_wrong_mqtt_password_is_named_at_once_and_never_retried(
    kiosk: Harness, mosquitto: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    await kiosk.enroll_buyer("buyer1")
    monkeypatch.setenv("MICROPAY_MQTT_PASSWORD", WRONG)
    code, out, err = await micropay(kiosk, "buyer", "balance")
    assert (code, out) == (1, "")
    assert err == (
        f"micropay: error: MQTT refused the connection as 'buyer1' at 127.0.0.1:{mosquitto.port}:"
        " not authorised (a wrong user name or password, or a new user before it reloaded)\n"
    )

    # A daemon exits at once too (a supervisor restarting it will not fix a password).
    assert kiosk.info is not None
    wrong = MqttSettings(port=mosquitto.port, username="vendor2", password=WRONG)
    vendor = await VendorAgent.open(
        kiosk.root / "vendor2", "vendor2", kiosk.info, VendorTerms(), wrong
    )
    raised, seconds = await timed(asyncio.wait_for(vendor.run(), 10))
    assert isinstance(raised, MqttRefusedError)
    assert "MQTT refused the connection as 'vendor2'" in str(raised)
    assert seconds < 5


def test_a_vendor_daemon_refused_by_mqtt_exits_1_with_that_line(
    tmp_path: Path, mosquitto: Broker
) -> None:
    asyncio.run(init_broker(tmp_path / "broker", "broker"))
    password = tmp_path / "vendor1.pw"
    password.write_text(WRONG)
    password.chmod(0o600)
    started = time.monotonic()
    code, _, err = cli(
        [
            *("vendor", "run", "--name", "vendor1", "--data-dir", str(tmp_path / "vendor1")),
            *("--broker-pub", str(tmp_path / "broker" / "broker.pub.json")),
            *("--mqtt-port", str(mosquitto.port), "--mqtt-password-file", str(password)),
        ]
    )
    assert code == 1
    assert time.monotonic() - started < 5
    (line,) = [line for line in err.splitlines() if "CRITICAL" in line]
    assert line.endswith(
        f"stopping: MQTT refused the connection as 'vendor1' at 127.0.0.1:{mosquitto.port}:"
        " not authorised (a wrong user name or password, or a new user before it reloaded)"
    )


@pytest.mark.asyncio
async def test_a_vendor_that_is_not_there_is_named_within_seconds(kiosk: Harness) -> None:
    await kiosk.enroll_buyer("buyer1")
    started = time.monotonic()
    code, _, err = await micropay(kiosk, "buyer", "pay", "nosuch")
    assert code == 1
    assert err == (
        "micropay: error: no offer from vendor 'nosuch' within 5 s: is it running and enrolled?\n"
    )
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("payments", ["0", "-5", "two"])
def test_payments_that_are_not_a_positive_number_are_a_usage_error(payments: str) -> None:
    code, _, err = cli(["buyer", "pay", "vendor1", "--payments", payments, "--name", "buyer1"])
    assert code == 2
    assert err.splitlines()[-1].startswith("micropay buyer pay: error: argument --payments:")


@pytest.mark.asyncio
async def test_items_are_checked_before_paying_and_a_covered_one_is_served(
    kiosk: Harness,
) -> None:
    await kiosk.enroll_buyer("buyer1")
    vendor = kiosk.vendors["vendor1"]
    for item, units, said in (
        ("pizza", "1", "vendor1 does not offer 'pizza' (it offers coffee at 150)"),
        (
            "coffee",
            "1",
            (
                "'coffee' costs 150 at vendor1, but a payment of 1 unit of 1 pays 1:"
                " pay at least 150 units"
            ),
        ),
    ):
        code, _, err = await micropay(
            kiosk, "buyer", "pay", "vendor1", "--item-name", item, "--units", units
        )
        assert (code, err) == (1, f"micropay: error: {said}\n")
    assert vendor.counters.payments == 0
    code, out, _ = await micropay(
        kiosk, "buyer", "pay", "vendor1", "--item-name", "coffee", "--units", "150"
    )
    assert code == 0
    assert json.loads(out)["acknowledged_index"] == 150
    assert vendor.counters.amount == 150


@pytest.mark.asyncio
async def test_a_vendor_refusing_a_payment_ends_the_command_with_its_reason(
    kiosk: Harness,
) -> None:
    # The buyer holds an older offer (coffee at 1); the vendor now asks 150.
    await kiosk.enroll_buyer("buyer1")
    buyer = await kiosk.buyer("buyer1")

    async def with_an_older_offer() -> None:
        await buyer.offer("vendor1", 5)  # then stand in an old offer for it
        known = buyer.core.offers["vendor1"]
        known.offer = msgspec.structs.replace(known.offer, items=[OfferItem("coffee", 1)])
        await buyer.pay("vendor1", 1, 1, item="coffee")

    raised, seconds = await timed(buyer.run(with_an_older_offer))
    assert str(raised) == (
        "vendor1 refused the payment at index 1:"
        " 'coffee' costs 150; this payment adds 1 unit of 1 = 1 (item)"
    )
    assert seconds < 5
    assert kiosk.vendors["vendor1"].counters.payments == 0


@pytest.mark.asyncio
async def test_the_credit_limit_and_what_is_paid_are_told_in_numbers(kiosk: Harness) -> None:
    token = await kiosk.open_account("buyer1", "buyer", credit_limit=50)
    buyer = await kiosk.buyer("buyer1")
    await buyer.run(lambda: buyer.enroll(token))

    code, _, err = await micropay(kiosk, "buyer", "pay", "vendor1", "--payments", "60")
    assert (code, err) == (
        1,
        (
            "micropay: error: 60 units (60) would pass your credit limit of 50:"
            " 0 is paid already, 50 is left\n"
        ),
    )
    code, _, _ = await micropay(kiosk, "buyer", "pay", "vendor1", "--payments", "50")
    assert code == 0

    # Paid, not yet redeemed: the wallet knows it before the broker does.
    code, out, _ = await micropay(kiosk, "buyer", "balance")
    balance = json.loads(out)
    del balance["invoice"]
    assert balance == {
        "account": "buyer1",
        "currency": "EUR",
        "state": "active",
        "credit_limit": 50,
        "debited": 0,
        "paid_not_redeemed": 50,
        "reserved": 0,
        "scrip": [],  # none bought
        "allowance": {"per_vendor": 0, "note": "no daily allowance is set for this account"},
    }
    vendor = kiosk.vendors["vendor1"]
    await vendor.loop.act(vendor.core.redeem_all)
    code, _, err = await micropay(kiosk, "buyer", "pay", "vendor1", "--payments", "2")
    assert (code, err) == (
        1,
        (
            "micropay: error: 2 units (2) would pass your credit limit of 50:"
            " 50 is paid already, 0 is left\n"
        ),
    )
    code, out, _ = await micropay(kiosk, "buyer", "balance")
    assert (json.loads(out)["debited"], json.loads(out)["paid_not_redeemed"]) == (50, 0)


@pytest.mark.asyncio
async def test_a_revoked_buyer_is_told_so_at_once(kiosk: Harness) -> None:
    await kiosk.enroll_buyer("buyer1")
    code, _, _ = await micropay(kiosk, "buyer", "pay", "vendor1", "--payments", "2")
    assert code == 0
    answer = await operator_request(kiosk.root / "broker", Revoke(account="buyer1"))
    assert isinstance(answer, Revoked)
    started = time.monotonic()
    code, _, err = await micropay(kiosk, "buyer", "pay", "vendor1")
    assert (code, err) == (
        1,
        (
            "micropay: error: your certificate (serial 2) is revoked: vendors refuse your"
            " payments and new chains; the broker's operator can say why\n"
        ),
    )
    assert time.monotonic() - started < 5
    code, out, _ = await micropay(kiosk, "buyer", "balance")
    assert (code, json.loads(out)["state"]) == (0, "revoked")


@pytest.mark.asyncio
async def test_a_wallet_restored_from_an_older_copy_pays_on_instead_of_being_refused(
    kiosk: Harness,
) -> None:
    # Refusals end a command at once, so a restored wallet must learn where it stood first.
    await kiosk.enroll_buyer("buyer1")
    wallet = kiosk.root / "buyer1"
    assert (await micropay(kiosk, "buyer", "pay", "vendor1", "--payments", "5"))[0] == 0
    shutil.copytree(wallet, kiosk.root / "backup")
    assert (await micropay(kiosk, "buyer", "pay", "vendor1", "--payments", "5"))[0] == 0
    shutil.rmtree(wallet)
    shutil.copytree(kiosk.root / "backup", wallet)
    code, out, _ = await micropay(kiosk, "buyer", "pay", "vendor1", "--payments", "3")
    assert code == 0
    assert json.loads(out)["acknowledged_index"] == 13
    assert kiosk.vendors["vendor1"].counters.amount == 13


@pytest.mark.asyncio
async def test_a_command_with_no_mqtt_broker_listening_says_so_at_once(kiosk: Harness) -> None:
    """Nothing on that port (Mosquitto not running, a wrong port): named, not waited out."""
    await kiosk.enroll_buyer("buyer1")
    nobody = free_port()
    common = ["--name", "buyer1", "--data-dir", str(kiosk.root / "buyer1")]
    common += ["--broker-pub", str(kiosk.root / "broker" / "broker.pub.json")]
    started = time.monotonic()
    code, out, err = await asyncio.to_thread(
        cli, ["buyer", "balance", *common, "--mqtt-port", str(nobody), "--timeout", "30"]
    )
    assert (code, out) == (1, "")
    last = err.splitlines()[-1]
    assert last.startswith(
        f"micropay: error: could not reach the MQTT broker at 127.0.0.1:{nobody} ("
    )
    assert last.endswith("): is Mosquitto running there?")
    assert time.monotonic() - started < 5  # not the 30 s timeout
