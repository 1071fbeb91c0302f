"""A buyer's dispute, end to end: real agents pay over Mosquitto, the broker issues evidence.

The bundle is issued twice: while the broker daemon is serving (the ledger is read
read-only beside it) and after it stopped. Both verify offline, and the amount they
charge is what the buyer's own wallet says it spent. A copy inflated by anyone but the
broker fails.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agents.cli.main import main
from agents.daemons.wallet_store import WalletStore
from agents.runtime.keystore import load_identity
from agents.runtime.sealing import SeedSealer
from broker_ledger.codec import DEFAULT_CODEC
from broker_ledger.evidence import decoded_view
from protocol.broker_events import PaywordsRedeemed
from protocol.codec import decode_commitment, decode_signed
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker
from tests.agents.harness import Harness, wait_until

UNIT_VALUE = 3


async def _dispute(root: Path, cid: bytes, target: Path) -> None:
    arguments = ["broker", "dispute", cid.hex()[:16], "--dir", str(root / "broker")]
    code = await asyncio.to_thread(main, [*arguments, "--output", str(target)])
    assert code == 0


def _audit(*arguments: str) -> int:
    return main(["audit", "--evidence", *arguments])


def _inflated(bundle: dict[str, Any]) -> dict[str, Any]:
    """Ten more paywords than the buyer released, charged consistently."""
    forged = copy.deepcopy(bundle)
    forged["highest"]["index"] += 10
    forged["charged"]["total"] += 10 * UNIT_VALUE
    forged["charged"]["unbilled"] += 10 * UNIT_VALUE
    return forged


def _dearer(bundle: dict[str, Any]) -> dict[str, Any]:
    """The last redemption charged twice its amount, body and view alike."""
    forged = copy.deepcopy(bundle)
    last = [e for e in forged["events"] if e["type"] == "paywords-redeemed"][-1]
    event = DEFAULT_CODEC.decode(last["type"], last["schema"], bytes.fromhex(last["body"]))
    assert isinstance(event, PaywordsRedeemed)
    richer = msgspec.structs.replace(event, amount=event.amount * 2)
    last["body"] = DEFAULT_CODEC.encode(richer)[2].hex()
    last["decoded"] = decoded_view(richer)
    forged["charged"]["total"] += event.amount
    forged["charged"]["unbilled"] += event.amount
    return forged


@pytest.mark.asyncio
async def test_the_buyer_can_prove_what_it_was_charged(
    tmp_path: Path, mosquitto: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    harness = Harness(tmp_path, mosquitto)
    await harness.start_broker()
    vendor = await harness.start_vendor("vendor1", VendorTerms(unit_value=UNIT_VALUE))
    await harness.enroll_buyer("buyer1")
    buyer = await harness.buyer("buyer1")
    result = await buyer.run(lambda: buyer.pay("vendor1", 25, 4))
    assert result.acknowledged == 100

    # The vendor redeems now; the broker daemon keeps serving while the evidence is issued.
    await vendor.loop.act(vendor.core.redeem_all)
    await wait_until(lambda: not vendor.core.unredeemed_amount)
    keys = load_identity(tmp_path / "buyer1" / "agent.key")
    wallet = await WalletStore.open(
        tmp_path / "buyer1" / "wallet.db", owner=keys, sealer=SeedSealer(keys, "buyer1")
    )
    try:
        (channel,) = await wallet.channels()
    finally:
        await wallet.close()
    commitment = decode_commitment(decode_signed(channel.commitment).body)
    paid = channel.spent * commitment.unit_value
    assert (channel.spent, commitment.unit_value) == (100, UNIT_VALUE)

    live = tmp_path / "live.json"
    await _dispute(tmp_path, channel.commitment_id, live)
    assert harness.info is not None
    key = harness.info.sign_key.hex()
    assert _audit(str(live), "--broker-key", key) == 0

    await harness.stop()
    final = tmp_path / "final.json"
    await _dispute(tmp_path, channel.commitment_id, final)
    ledger = str(tmp_path / "broker" / "ledger.db")
    capsys.readouterr()
    for issued in (live, final):
        assert _audit(str(issued), "--broker-key", key, "--ledger", ledger) == 0
        assert "result: PASSED" in capsys.readouterr().out

    bundle = json.loads(final.read_text())
    assert bundle["commitment"]["id"] == channel.commitment_id.hex()
    assert bundle["highest"]["index"] == channel.spent
    assert bundle["charged"]["total"] == paid
    assert bundle["charged"]["unbilled"] == paid  # no period was closed
    redeemed = [e for e in bundle["events"] if e["type"] == "paywords-redeemed"]
    assert sum(e["decoded"]["amount"] for e in redeemed) == paid
    assert json.loads(live.read_text())["charged"]["total"] == paid

    assert harness.daemon is not None
    assert harness.daemon.service.core.totals.debited["buyer1"] == paid

    # Copies changed by anyone but the broker: more paywords, or a larger amount.
    cases = (
        (_inflated(bundle), ("broker-signature", "payword-chain", "redemptions")),
        (
            _dearer(bundle),
            ("broker-signature", "redemption-amounts", "event-links", "ledger-inclusion"),
        ),
    )
    for number, (forged, checks) in enumerate(cases):
        path = tmp_path / f"forged-{number}.json"
        path.write_text(json.dumps(forged))
        assert _audit(str(path), "--broker-key", key, "--ledger", ledger) == 1
        out = capsys.readouterr().out
        for check in checks:
            assert f"FAILED: {check}: " in out, out
        assert "result: FAILED" in out
