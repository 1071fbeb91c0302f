"""Dispute evidence on real ledger files: a bundle verifies, every kind of lie is caught."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agents.cli.main import main
from agents.daemons.broker_files import write_public
from broker_ledger.codec import DEFAULT_CODEC
from broker_ledger.evidence import (
    EvidenceError,
    canonical_bytes,
    decoded_view,
    issue,
    resolve_commitment,
    sign_bundle,
)
from broker_ledger.evidence_report import EvidenceReport
from broker_ledger.evidence_verify import verify
from broker_ledger.format import GENESIS, link_hash
from broker_ledger.store import EventStore
from protocol.broker_events import PaywordsRedeemed, RedemptionRejected
from protocol.crypto import Identity
from protocol.endpoint import BrokerInfo
from tests.ledger.scenario import LedgerRun, build_ledger, persist
from tests.support.world import seeded_identity

BROKER = seeded_identity("broker")
BROKER_KEY = BROKER.sign_key
Bundle = dict[str, Any]


@dataclass
class Disputed:
    path: Path
    run: LedgerRun
    cid: bytes
    other: bytes  # the same buyer's commitment to the other vendor
    rejected_seq: int


async def _extend(run: LedgerRun, cid: bytes) -> int:
    """After the period closed: more paywords on one chain, and a rejected redemption of it."""
    world = run.world
    store = await EventStore.open(run.path, "broker", signer=BROKER, checkpoint_every=40)
    try:
        world.buyers["buyer1"].pay(cid, 7, world.now)
        world.pump(0.5)
        for vendor in world.vendors.values():
            vendor.redeem_all(world.now)
        world.pump()
        await persist(world, store)
        record = world.broker.chains[cid]
        (stored,) = await store.append_events(
            [
                RedemptionRejected(
                    at=int(world.now * 1000),
                    vendor="vendor2",
                    reason="commitment is for vendor 'vendor1', not 'vendor2'",
                    commitment=record.commitment,
                    index=record.index + 1,
                    payword=bytes(32),
                )
            ]
        )
    finally:
        await store.close()
    return stored.seq


@pytest.fixture(scope="module")
def disputed(tmp_path_factory: pytest.TempPathFactory) -> Disputed:
    path = tmp_path_factory.mktemp("evidence") / "ledger.db"
    run = asyncio.run(build_ledger(path, payments=60))
    channels = {channel.vendor: cid for cid, channel in run.world.buyers["buyer1"].channels.items()}
    cid = channels["vendor1"]
    rejected = asyncio.run(_extend(run, cid))
    return Disputed(path, run, cid, channels["vendor2"], rejected)


@pytest.fixture(scope="module")
def bundle(disputed: Disputed) -> Bundle:
    issued = issue(disputed.path, BROKER, "broker", disputed.cid.hex(), 1_800_000_000_000)
    read: Bundle = json.loads(json.dumps(issued))  # exactly what a reader of the file gets
    return read


def failed(report: EvidenceReport) -> set[str]:
    return {name for name, passed in report.checks.items() if not passed}


# --- a bundle that holds --------------------------------------------------------------------


def test_a_bundle_verifies_and_carries_what_a_dispute_needs(
    disputed: Disputed, bundle: Bundle
) -> None:
    report = verify(bundle, BROKER_KEY, disputed.path)
    assert report.ok, report.findings
    assert "ledger-completeness" in report.checks

    record = disputed.run.world.broker.chains[disputed.cid]
    assert bundle["commitment"]["id"] == disputed.cid.hex()
    assert (bundle["commitment"]["buyer"], bundle["commitment"]["vendor"]) == (
        "buyer1",
        "vendor1",
    )
    assert bundle["highest"] == {"index": record.index, "payword": record.word.hex()}
    charged = bundle["charged"]
    assert charged["total"] == record.amount == record.index * record.unit_value
    assert charged["billed"] > 0
    assert charged["unbilled"] == 7 * record.unit_value
    (period,) = bundle["billing"]
    assert period["period"] == "2026-01"
    assert period["amount"] == charged["billed"]
    assert period["invoice_line"]["amount"] >= period["amount"]
    assert period["statement_line"]["amount"] >= period["amount"]

    types = [event["type"] for event in bundle["events"]]
    assert types[0] == "commitment-registered"
    assert types.count("paywords-redeemed") >= 2
    assert {"invoice-issued", "statement-issued", "period-closed"} <= set(types)
    rejection = next(e for e in bundle["events"] if e["type"] == "redemption-rejected")
    assert rejection["seq"] == disputed.rejected_seq
    assert rejection["stream"] == "rejections:vendor2"
    assert bundle["ledger_head"]["seq"] == disputed.rejected_seq


def test_the_signature_covers_the_canonical_bytes(bundle: Bundle) -> None:
    message = canonical_bytes(bundle)
    unsigned = {key: value for key, value in bundle.items() if key != "signature"}
    assert message == json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
    assert b'"signature"' not in message
    assert message == canonical_bytes(json.loads(json.dumps(bundle, indent=4)))
    reordered = dict(reversed(list(bundle.items())))
    assert canonical_bytes(reordered) == message


def test_a_prefix_names_the_commitment(disputed: Disputed) -> None:
    issued = issue(disputed.path, BROKER, "broker", disputed.cid.hex()[:10].upper(), 1)
    assert issued["commitment"]["id"] == disputed.cid.hex()


def test_an_ambiguous_or_unknown_prefix_is_refused() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    db.executemany(
        "INSERT INTO streams (name) VALUES (?)",
        [(f"commitment:ab{'1' * 62}",), (f"commitment:ab{'2' * 62}",), ("period:ab",)],
    )
    assert resolve_commitment(db, "ab1") == bytes.fromhex("ab" + "1" * 62)
    with pytest.raises(EvidenceError, match="more than one"):
        resolve_commitment(db, "ab")
    with pytest.raises(EvidenceError, match="no commitment"):
        resolve_commitment(db, "cd")
    with pytest.raises(EvidenceError, match="not a commitment id"):
        resolve_commitment(db, "xyz")


def test_issuing_refuses_another_brokers_key(disputed: Disputed) -> None:
    with pytest.raises(EvidenceError, match="another broker key"):
        issue(disputed.path, seeded_identity("mallory"), "broker", disputed.cid.hex(), 1)
    with pytest.raises(EvidenceError, match="belongs to broker"):
        issue(disputed.path, BROKER, "other", disputed.cid.hex(), 1)


@pytest.mark.asyncio
async def test_issued_while_the_ledger_is_being_written(disputed: Disputed, tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    shutil.copy(disputed.path, path)
    world = disputed.run.world
    store = await EventStore.open(path, "broker", signer=BROKER, checkpoint_every=40)
    try:
        record = world.broker.chains[disputed.other]
        chain = world.buyers["buyer1"].channels[disputed.other].chain
        index = record.index + 3
        await store.append_events(
            [
                PaywordsRedeemed(
                    at=int(world.now * 1000) + 1,
                    commitment_id=disputed.other,
                    buyer="buyer1",
                    vendor="vendor2",
                    commitment=record.commitment,
                    from_index=record.index,
                    index=index,
                    payword=chain.word(index),
                    units=3,
                    amount=3 * record.unit_value,
                )
            ]
        )
        # The writer holds the file open (WAL): the evidence reads it read-only alongside.
        issued = await asyncio.to_thread(
            issue, path, BROKER, "broker", disputed.other.hex(), 1_800_000_000_000
        )
        assert issued["highest"]["index"] == index
        report = verify(issued, BROKER_KEY, path)
        assert report.ok, report.findings
    finally:
        await store.close()


# --- lies, each caught by its own check ---------------------------------------------------------


def _reencode(event: Bundle, **changes: Any) -> None:
    body = bytes.fromhex(event["body"])
    decoded = DEFAULT_CODEC.decode(event["type"], event["schema"], body)
    changed = msgspec.structs.replace(decoded, **changes)
    _, _, new_body = DEFAULT_CODEC.encode(changed)
    event["body"] = new_body.hex()
    event["decoded"] = decoded_view(changed)


def relink(bundle: Bundle) -> None:
    """What a lying broker can fix up: every hash the bundle itself holds."""
    before: Bundle | None = None
    for event in bundle["events"]:
        if before is not None and before["seq"] == event["seq"] - 1:
            event["previous"] = before["hash"]
        event["hash"] = link_hash(
            bytes.fromhex(event["previous"]),
            event["seq"],
            event["stream"],
            event["version"],
            event["type"],
            event["schema"],
            event["at"],
            bytes.fromhex(event["body"]),
        ).hex()
        before = event
    if before is not None and before["seq"] == bundle["ledger_head"]["seq"]:
        bundle["ledger_head"]["hash"] = before["hash"]


def redemptions(bundle: Bundle) -> list[Bundle]:
    return [e for e in bundle["events"] if e["type"] == "paywords-redeemed"]


def inflate_index(bundle: Bundle) -> None:
    unit_value = bundle["commitment"]["unit_value"]
    bundle["highest"]["index"] += 10
    bundle["charged"]["total"] += 10 * unit_value
    bundle["charged"]["unbilled"] += 10 * unit_value


def alter_amount(bundle: Bundle) -> None:
    last = redemptions(bundle)[-1]
    amount = last["decoded"]["amount"] + 5
    _reencode(last, amount=amount)
    relink(bundle)
    bundle["charged"]["total"] += 5
    bundle["charged"]["unbilled"] += 5


def wrong_payword(bundle: Bundle) -> None:
    bundle["highest"]["payword"] = hashlib.sha256(b"not a payword").hexdigest()


def edit_body(bundle: Bundle) -> None:
    _reencode(redemptions(bundle)[0], vendor="vendor2")


def edit_view(bundle: Bundle) -> None:
    """The readable view says more than the hashed body."""
    redemptions(bundle)[0]["decoded"]["amount"] += 100


def break_link(bundle: Bundle) -> None:
    bundle["events"][2]["previous"] = "00" * 32


def drop_redemption(bundle: Bundle) -> None:
    bundle["events"].remove(redemptions(bundle)[1])


def alter_billing(bundle: Bundle) -> None:
    bundle["billing"][0]["amount"] -= 1
    bundle["charged"]["billed"] -= 1
    bundle["charged"]["unbilled"] += 1


def add_member(bundle: Bundle) -> None:
    bundle["commitment"]["note"] = "trust me"


def claim_an_earlier_word(bundle: Bundle) -> None:
    """A genuine payword of the chain, but not the one at the claimed index."""
    bundle["highest"]["payword"] = redemptions(bundle)[0]["decoded"]["payword"]


@pytest.mark.parametrize(
    ("lie", "check"),
    [
        (inflate_index, "payword-chain"),
        (inflate_index, "redemptions"),
        (alter_amount, "redemption-amounts"),
        (alter_amount, "total-charged"),
        (wrong_payword, "payword-chain"),
        (claim_an_earlier_word, "redemptions"),
        (claim_an_earlier_word, "payword-chain"),
        (edit_body, "event-links"),
        (edit_body, "redemptions"),
        (edit_view, "event-bodies"),
        (break_link, "event-links"),
        (drop_redemption, "event-streams"),
        (drop_redemption, "redemptions"),
        (alter_billing, "billing"),
        (add_member, "bundle-format"),
    ],
    ids=lambda value: getattr(value, "__name__", value),
)
def test_a_lie_signed_by_the_broker_fails_its_check(
    bundle: Bundle, lie: Callable[[Bundle], None], check: str
) -> None:
    forged = copy.deepcopy(bundle)
    lie(forged)
    report = verify(sign_bundle(forged, BROKER), BROKER_KEY)
    assert check in failed(report), report.findings
    if check != "bundle-format":
        assert report.checks["broker-signature"]
    # Changed by anyone but the broker, the same bundle fails its signature first of all.
    tampered = {**forged, "signature": bundle["signature"]}
    assert not verify(tampered, BROKER_KEY).checks.get("broker-signature", False)


def test_a_swapped_commitment_does_not_match_the_events(disputed: Disputed, bundle: Bundle) -> None:
    other = issue(disputed.path, BROKER, "broker", disputed.other.hex(), 1)
    forged = {**copy.deepcopy(bundle), "commitment": other["commitment"]}
    report = verify(sign_bundle(forged, BROKER), BROKER_KEY)
    assert report.checks["commitment-fields"]  # the other commitment is genuine...
    assert report.checks["commitment-signature"]
    assert {"event-streams", "redemptions", "payword-chain"} <= failed(report)  # ...not these


def test_only_a_ledger_copy_shows_an_event_left_out(disputed: Disputed, bundle: Bundle) -> None:
    forged = copy.deepcopy(bundle)
    unbilled = redemptions(forged)[-1]
    forged["events"].remove(unbilled)
    previous = redemptions(forged)[-1]["decoded"]
    forged["highest"] = {"index": previous["index"], "payword": previous["payword"]}
    forged["charged"]["total"] -= unbilled["decoded"]["amount"]
    forged["charged"]["unbilled"] -= unbilled["decoded"]["amount"]
    signed = sign_bundle(forged, BROKER)
    assert verify(signed, BROKER_KEY).ok  # consistent in itself
    report = verify(signed, BROKER_KEY, disputed.path)
    assert failed(report) == {"ledger-completeness"}


def test_a_bad_signature_or_another_key_fails(bundle: Bundle) -> None:
    flipped = {**bundle, "signature": ("00" if bundle["signature"][:2] != "00" else "01")}
    flipped["signature"] += bundle["signature"][2:]
    assert failed(verify(flipped, BROKER_KEY)) == {"broker-signature"}

    assert failed(verify(bundle, seeded_identity("mallory").sign_key)) == {"broker-signature"}

    mallory = seeded_identity("mallory")
    resigned = sign_bundle(
        {**bundle, "broker": {**bundle["broker"], "sign_key": mallory.sign_key.hex()}}, mallory
    )
    report = verify(resigned, BROKER_KEY)
    assert {"broker-signature", "certificate-signature"} <= failed(report)
    # Without the expected key the signature holds, but the buyer's certificate does not.
    assert failed(verify(resigned)) == {"certificate-signature"}


def _rewrite(path: Path, seq: int, change: Callable[[Bundle], None]) -> None:
    """Rewrite one event and every link hash after it, as a broker covering its tracks would."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT seq, stream, version, type, schema, at, body FROM event_log ORDER BY seq"
        ).fetchall()
        link = GENESIS
        for number, stream, version, kind, schema, at, body in rows:
            event = {"type": kind, "schema": schema, "at": at, "body": bytes(body).hex()}
            if number == seq:
                change(event)
            raw = bytes.fromhex(event["body"])
            link = link_hash(link, number, stream, version, kind, schema, event["at"], raw)
            db.execute(
                "UPDATE events SET at = ?, body = ?, hash = ? WHERE seq = ?",
                (event["at"], raw, link, number),
            )


def _later(event: Bundle) -> None:
    event["at"] += 1


def _richer(event: Bundle) -> None:
    body = bytes.fromhex(event["body"])
    decoded = DEFAULT_CODEC.decode(event["type"], event["schema"], body)
    assert isinstance(decoded, PaywordsRedeemed)
    _reencode(event, amount=decoded.amount + 1)


@pytest.mark.parametrize("which", ["redemption", "earlier"])
def test_a_ledger_rewritten_after_issue_is_caught(
    disputed: Disputed, bundle: Bundle, tmp_path: Path, which: str
) -> None:
    copy_path = tmp_path / "rewritten.db"
    shutil.copy(disputed.path, copy_path)
    if which == "earlier":  # an event before the commitment existed: the chain moves on
        _rewrite(copy_path, 2, _later)
    else:
        _rewrite(copy_path, redemptions(bundle)[0]["seq"], _richer)
    assert verify(bundle, BROKER_KEY).ok
    report = verify(bundle, BROKER_KEY, copy_path)
    assert failed(report) == {"ledger-inclusion"}, report.findings


def test_a_ledger_that_is_not_there_or_not_a_ledger_fails(bundle: Bundle, tmp_path: Path) -> None:
    report = verify(bundle, BROKER_KEY, tmp_path / "missing.db")
    assert {"ledger-inclusion", "ledger-completeness"} <= failed(report)
    bogus = tmp_path / "notes.db"
    bogus.write_text("not a database")
    assert "ledger-inclusion" in failed(verify(bundle, BROKER_KEY, bogus))


@pytest.mark.parametrize(
    "data", [[], "text", {"format": "micropay-evidence/0"}, {"format": "micropay-evidence/1"}]
)
def test_what_is_not_a_bundle_fails_its_format(data: object) -> None:
    report = verify(data, BROKER_KEY)
    assert failed(report) == {"bundle-format"}
    assert not report.ok


# --- the command line ---------------------------------------------------------------------------


def _broker_dir(root: Path, ledger: Path, identity: Identity) -> Path:
    directory = root / "broker"
    directory.mkdir()
    seeds = {
        "sign_seed": hashlib.sha256(b"sign:broker").hexdigest(),
        "agree_seed": hashlib.sha256(b"agree:broker").hexdigest(),
    }
    descriptor = os.open(directory / "broker.key", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(seeds))
    write_public(
        directory / "broker.pub.json", BrokerInfo("broker", identity.sign_key, identity.agree_key)
    )
    shutil.copy(ledger, directory / "ledger.db")
    return directory


def test_dispute_and_audit_evidence_on_the_command_line(
    disputed: Disputed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _broker_dir(tmp_path, disputed.path, BROKER)
    evidence = tmp_path / "evidence.json"
    prefix = disputed.cid.hex()[:12]
    assert (
        main(["broker", "dispute", prefix, "--dir", str(directory), "--output", str(evidence)]) == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["commitment"] == disputed.cid.hex()
    assert summary["charged"] == json.loads(evidence.read_text())["charged"]["total"]

    key = BROKER_KEY.hex()
    ledger = str(directory / "ledger.db")
    assert (
        main(["audit", "--evidence", str(evidence), "--broker-key", key, "--ledger", ledger]) == 0
    )
    out = capsys.readouterr().out
    assert "result: PASSED" in out
    assert "FAILED" not in out
    assert main(["audit", ledger, "--evidence", str(evidence), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["checks"]["ledger-inclusion"] is True

    assert main(["broker", "dispute", prefix, "--data-dir", str(directory)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["commitment"]["id"] == disputed.cid.hex()

    forged = json.loads(evidence.read_text())
    inflate_index(forged)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(forged))
    assert main(["audit", "--evidence", str(tampered), "--broker-key", key]) == 1
    out = capsys.readouterr().out
    assert "FAILED: broker-signature: " in out
    assert "FAILED: payword-chain: " in out
    assert "result: FAILED" in out


def test_dispute_of_an_unknown_commitment_fails_cleanly(
    disputed: Disputed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _broker_dir(tmp_path, disputed.path, BROKER)
    assert main(["broker", "dispute", "f" * 64, "--dir", str(directory)]) == 1
    assert "no commitment" in capsys.readouterr().err
    assert main(["broker", "dispute", "0", "--dir", str(tmp_path / "nowhere")]) == 1
    assert "no broker keys" in capsys.readouterr().err


def test_audit_usage_errors(
    disputed: Disputed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit"]) == 2
    assert "--evidence FILE" in capsys.readouterr().err
    assert main(["audit", "--ledger", str(disputed.path)]) == 2
    assert "goes with --evidence" in capsys.readouterr().err
    evidence = tmp_path / "evidence.json"
    evidence.write_text("{}")
    arguments = ["audit", str(disputed.path), "--evidence", str(evidence)]
    assert main([*arguments, "--ledger", str(disputed.path)]) == 2
    assert main([*arguments, "--export-csv", str(tmp_path / "x.csv")]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "--evidence", str(tmp_path / "missing.json")])
    assert exit_info.value.code == 2
    assert "no such file" in capsys.readouterr().err
    evidence.write_text("not json")
    assert main(["audit", "--evidence", str(evidence)]) == 1
    assert "FAILED: bundle-format: " in capsys.readouterr().out
