"""An agent stopped in the middle of a rekey picks up where it was, from its files alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.daemons.agent_keys import KEY_FILE, NEXT_KEY_FILE, pending_keys, settle_rekey
from agents.daemons.wallet_store import WalletStore
from agents.runtime.keystore import create_identity, load_identity
from protocol.credentials import issue_certificate
from protocol.crypto import AgentKeys
from protocol.messages import Certificate
from tests.support.world import seeded_identity


def certificate_for(keys: AgentKeys, serial: int) -> bytes:
    return issue_certificate(
        seeded_identity("broker"),
        Certificate(
            serial, "buyer1", "buyer", keys.sign_key, keys.agree_key, 100, "EUR", 0, 1, "broker"
        ),
    )


@pytest.mark.asyncio
async def test_a_stored_certificate_for_the_pending_keys_finishes_the_rotation(
    tmp_path: Path,
) -> None:
    create_identity(tmp_path / KEY_FILE)
    pending = pending_keys(tmp_path)
    assert pending_keys(tmp_path).sign_key == pending.sign_key  # asked again, not remade
    store = await WalletStore.open(tmp_path / "wallet.db")
    try:
        await store.put("certificate", certificate_for(pending, 2))
    finally:
        await store.close()
    assert settle_rekey(tmp_path, tmp_path / "wallet.db")
    assert load_identity(tmp_path / KEY_FILE).sign_key == pending.sign_key
    assert not (tmp_path / NEXT_KEY_FILE).exists()


@pytest.mark.asyncio
async def test_without_the_broker_s_answer_the_old_keys_stay(tmp_path: Path) -> None:
    old = create_identity(tmp_path / KEY_FILE)
    pending_keys(tmp_path)
    store = await WalletStore.open(tmp_path / "wallet.db")
    try:
        await store.put("certificate", certificate_for(old, 1))
    finally:
        await store.close()
    assert not settle_rekey(tmp_path, tmp_path / "wallet.db")
    assert load_identity(tmp_path / KEY_FILE).sign_key == old.sign_key
    assert (tmp_path / NEXT_KEY_FILE).exists()  # `keys rotate` asks for these again
