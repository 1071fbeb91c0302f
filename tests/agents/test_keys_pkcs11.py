"""Agent keys in a real SoftHSM2 token: what they do, what the token refuses to hand out,
the errors an operator sees, and the three protocol cores running on them."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

from agents.runtime.keys_pkcs11 import (
    SHARED_SECRETS_KEPT,
    TokenError,
    TokenKeys,
    TokenSpec,
    create_token_keys,
)
from agents.runtime.keystore import KeyFileError, create_identity, describe_keys, load_identity
from agents.runtime.pkcs11_descriptor import AgreementMode
from agents.runtime.pkcs11_pin import PIN_ENV, PIN_FILE_ENV
from agents.runtime.pkcs11_session import close_sessions, open_session, token_errors
from protocol.broker import BrokerCore
from protocol.buyer import BuyerCore
from protocol.crypto import TAG_COMMITMENT, AgentKeys
from protocol.errors import AuthenticationError
from protocol.events import CertificateReceived, PaymentAccepted, RedemptionConfirmed
from protocol.ledger_heads import sign_head, verify_head
from protocol.memory import MemoryNetwork
from protocol.vendor import VendorCore
from tests.support.small_order import small_order_x25519
from tests.support.softhsm import USER_PIN, SoftToken, soft_token
from tests.support.world import SeededRandom, World, default_terms, events_of

MODES: tuple[AgreementMode, ...] = ("token", "sealed")


@pytest.fixture
def token(tmp_path: Path) -> Iterator[SoftToken]:
    with soft_token(tmp_path / "softhsm") as made:
        yield made


def create(token: SoftToken, directory: Path, name: str, mode: AgreementMode) -> TokenKeys:
    return create_token_keys(directory / f"{name}.json", token.spec(name), mode)


def x25519_public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def guarded_objects(token: SoftToken, key_label: str) -> list[pkcs11.Key]:
    session = open_session(token.module, token.label, USER_PIN).session
    found = [
        key
        for kind in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY)
        for key in session.get_objects({Attribute.CLASS: kind})
        if isinstance(key, pkcs11.Key)
    ]
    return [key for key in found if key.label.startswith(f"{key_label}-")]


# What the keys do.


def test_signatures_verify_with_cryptography(token: SoftToken, tmp_path: Path) -> None:
    keys = create(token, tmp_path, "buyer", "token")
    signature = keys.sign(TAG_COMMITMENT, b"thirty-two bytes of commitment!!")
    verifier = Ed25519PublicKey.from_public_bytes(keys.sign_key)
    verifier.verify(signature, TAG_COMMITMENT + b"thirty-two bytes of commitment!!")

    reopened = load_identity(tmp_path / "buyer.json")
    assert isinstance(reopened, TokenKeys)
    assert reopened.sign_key == keys.sign_key
    verifier.verify(reopened.sign(b"tag\x00", b"again"), b"tag\x00again")


@pytest.mark.parametrize("mode", MODES)
def test_shared_secret_equals_cryptography_x25519(
    token: SoftToken, tmp_path: Path, mode: AgreementMode
) -> None:
    keys = create(token, tmp_path, "vendor", mode)
    assert keys.agreement_mode == mode
    peer = X25519PrivateKey.generate()
    expected = peer.exchange(X25519PublicKey.from_public_bytes(keys.agree_key))
    assert keys.shared_secret(x25519_public(peer)) == expected

    close_sessions()  # a new process: nothing cached, the descriptor read again
    reopened = load_identity(tmp_path / "vendor.json")
    assert reopened.agree_key == keys.agree_key
    assert reopened.shared_secret(x25519_public(peer)) == expected


@pytest.mark.parametrize("mode", MODES)
def test_low_order_peer_keys_fail_authentication(
    token: SoftToken, tmp_path: Path, mode: AgreementMode
) -> None:
    keys = create(token, tmp_path, "vendor", mode)
    for weak in small_order_x25519():
        with pytest.raises(AuthenticationError):
            keys.shared_secret(weak)
    with pytest.raises(AuthenticationError):
        keys.shared_secret(b"short")


def test_shared_secrets_are_cached_within_a_bound(token: SoftToken, tmp_path: Path) -> None:
    keys = create(token, tmp_path, "vendor", "sealed")
    peers = [x25519_public(X25519PrivateKey.generate()) for _ in range(SHARED_SECRETS_KEPT + 5)]
    first = keys.shared_secret(peers[0])
    assert keys.shared_secret(peers[0]) == first
    for peer in peers:
        keys.shared_secret(peer)
    assert len(keys._shared) == SHARED_SECRETS_KEPT
    assert peers[0] not in keys._shared
    assert peers[-1] in keys._shared


def test_derive_secret_is_deterministic_and_bound_to_info(token: SoftToken, tmp_path: Path) -> None:
    broker = create(token, tmp_path, "broker", "token")
    other = create(token, tmp_path, "other", "token")
    secret = broker.derive_secret(b"micropay/v1/token-secret\x00")
    assert len(secret) == 32
    assert broker.derive_secret(b"micropay/v1/token-secret\x00") == secret
    assert broker.derive_secret(b"micropay/v1/something-else\x00") != secret
    assert other.derive_secret(b"micropay/v1/token-secret\x00") != secret
    close_sessions()
    assert (
        load_identity(tmp_path / "broker.json").derive_secret(b"micropay/v1/token-secret\x00")
        == secret
    )


def test_signing_from_many_threads_shares_one_session(token: SoftToken, tmp_path: Path) -> None:
    keys = create(token, tmp_path, "vendor", "token")
    verifier = Ed25519PublicKey.from_public_bytes(keys.sign_key)
    failures: list[BaseException] = []

    def work(number: int) -> None:
        try:
            for round_ in range(40):
                data = f"{number}/{round_}".encode()
                verifier.verify(keys.sign(b"t\x00", data), b"t\x00" + data)
                keys.derive_secret(data)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# What the token keeps.


def test_private_keys_are_sensitive_unextractable_token_objects(
    token: SoftToken, tmp_path: Path
) -> None:
    create(token, tmp_path, "broker", "token")
    held = guarded_objects(token, "broker")
    assert sorted(key.label for key in held) == ["broker-agree", "broker-secret", "broker-sign"]
    session = open_session(token.module, token.label, USER_PIN).session
    wrapper = session.generate_key(
        KeyType.AES, 256, label="wrapper", capabilities=MechanismFlag.WRAP
    )
    for key in held:
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.TOKEN] is True
        with pytest.raises(p11.AttributeSensitive):
            key[Attribute.VALUE]
        assert isinstance(wrapper, pkcs11.types.WrapMixin)
        with pytest.raises(p11.KeyUnextractable):
            wrapper.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD)


def test_sealed_descriptor_holds_no_scalar_and_opens_only_intact(
    token: SoftToken, tmp_path: Path
) -> None:
    path = tmp_path / "buyer.json"
    keys = create_token_keys(path, token.spec("buyer"), "sealed")
    fields = json.loads(path.read_text())
    assert fields["agreement"] == "sealed"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(key.label for key in guarded_objects(token, "buyer")) == [
        "buyer-secret",
        "buyer-sign",
    ]
    peer = X25519PrivateKey.generate()
    sealed = bytearray.fromhex(fields["sealed_agree_seed"])
    sealed[-1] ^= 1
    fields["sealed_agree_seed"] = sealed.hex()
    path.write_text(json.dumps(fields))
    close_sessions()
    with pytest.raises(TokenError, match="does not open with this token's secret"):
        load_identity(path)
    assert keys.shared_secret(x25519_public(peer)) == peer.exchange(
        X25519PublicKey.from_public_bytes(keys.agree_key)
    )


def test_auto_takes_x25519_in_softhsm_and_says_so(
    token: SoftToken, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "vendor.json"
    with caplog.at_level(logging.INFO, logger="agents.runtime.keys_pkcs11"):
        keys = create_token_keys(path, token.spec("vendor"))
    assert keys.agreement_mode == "token"
    assert "agreement mode token" in caplog.text
    fields = json.loads(path.read_text())
    assert fields == {
        "backend": "pkcs11",
        "module": token.module,
        "token_label": token.label,
        "key_label": "vendor",
        "agreement": "token",
        "sign_key": keys.sign_key.hex(),
        "agree_key": keys.agree_key.hex(),
    }


def test_describe_keys_needs_no_pin(
    token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = create(token, tmp_path, "vendor", "sealed")
    identity = create_identity(tmp_path / "file.json")
    close_sessions()
    monkeypatch.delenv(PIN_ENV)
    assert describe_keys(tmp_path / "vendor.json") == {
        "backend": "pkcs11",
        "sign_key": keys.sign_key.hex(),
        "agree_key": keys.agree_key.hex(),
        "module": token.module,
        "token_label": token.label,
        "key_label": "vendor",
        "agreement": "sealed",
    }
    assert describe_keys(tmp_path / "file.json") == {
        "backend": "file",
        "sign_key": identity.sign_key.hex(),
        "agree_key": identity.agree_key.hex(),
    }


def test_file_keys_still_load_as_before(tmp_path: Path) -> None:
    identity = create_identity(tmp_path / "keys.json")
    loaded = load_identity(tmp_path / "keys.json")
    assert (loaded.sign_key, loaded.agree_key) == (identity.sign_key, identity.agree_key)
    assert loaded.derive_secret(b"x") == identity.derive_secret(b"x")


# What an operator is told.


def test_wrong_pin_is_named(
    token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(token, tmp_path, "vendor", "token")
    close_sessions()
    monkeypatch.setenv(PIN_ENV, "not-the-pin")
    with pytest.raises(TokenError, match=r"^wrong PIN for token micropay-test$"):
        load_identity(tmp_path / "vendor.json")


def test_a_locked_pin_is_named() -> None:
    # SoftHSM2 never locks a PIN, so the library's exception is raised here directly.
    with (
        pytest.raises(TokenError, match="PIN of token card is locked") as caught,
        token_errors("card", "logging in"),
    ):
        raise p11.PinLocked
    assert isinstance(caught.value.__cause__, p11.PinLocked)


def test_another_pin_than_the_open_sessions_is_wrong(
    token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(token, tmp_path, "vendor", "token")
    monkeypatch.setenv(PIN_ENV, "not-the-pin")
    with pytest.raises(TokenError, match="wrong PIN for token micropay-test"):
        load_identity(tmp_path / "vendor.json")


def test_no_pin_source_is_explained(
    token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PIN_ENV)
    with pytest.raises(TokenError, match=f"no PIN for token micropay-test: set {PIN_ENV}"):
        create(token, tmp_path, "vendor", "token")
    assert not (tmp_path / "vendor.json").exists()


def test_pin_files_from_environment_and_descriptor(
    token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(USER_PIN + "\n")
    pin_file.chmod(0o600)
    monkeypatch.delenv(PIN_ENV)
    create_token_keys(tmp_path / "vendor.json", token.spec("vendor", Path("pin")), "token")
    assert json.loads((tmp_path / "vendor.json").read_text())["pin_file"] == "pin"
    close_sessions()
    assert isinstance(load_identity(tmp_path / "vendor.json"), TokenKeys)

    close_sessions()
    monkeypatch.setenv(PIN_FILE_ENV, str(pin_file))
    create(token, tmp_path, "buyer", "sealed")
    close_sessions()
    assert isinstance(load_identity(tmp_path / "buyer.json"), TokenKeys)


def test_a_pin_file_others_can_read_is_refused(
    token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin_file = tmp_path / "elsewhere" / "pin"
    pin_file.parent.mkdir()
    pin_file.write_text(USER_PIN + "\n")
    pin_file.chmod(0o644)
    monkeypatch.delenv(PIN_ENV)
    monkeypatch.setenv(PIN_FILE_ENV, str(pin_file))
    with pytest.raises(TokenError, match=r"refusing the PIN file: .*open to group or others"):
        create(token, tmp_path, "vendor", "token")
    monkeypatch.setenv(PIN_FILE_ENV, str(tmp_path / "absent"))
    with pytest.raises(TokenError, match="no PIN file at"):
        create(token, tmp_path, "vendor", "token")


def test_missing_or_foreign_module_is_named(token: SoftToken, tmp_path: Path) -> None:
    absent = TokenSpec("/nowhere/libpkcs11.so", token.label, "vendor")
    with pytest.raises(TokenError, match=r"^no PKCS#11 module at /nowhere/libpkcs11.so$"):
        create_token_keys(tmp_path / "vendor.json", absent)
    junk = tmp_path / "elsewhere" / "junk.so"
    junk.parent.mkdir()
    junk.write_bytes(b"not a shared library")
    with pytest.raises(TokenError, match="is not a loadable PKCS#11 module"):
        create_token_keys(tmp_path / "vendor.json", TokenSpec(str(junk), token.label, "v"))
    assert not (tmp_path / "vendor.json").exists()


def test_missing_token_label_lists_the_tokens_there(token: SoftToken, tmp_path: Path) -> None:
    spec = TokenSpec(token.module, "no-such-token", "vendor")
    with pytest.raises(
        TokenError, match=r"^no token labelled no-such-token in .* \(tokens there: micropay-test\)$"
    ):
        create_token_keys(tmp_path / "vendor.json", spec)


def test_missing_key_label_is_named(token: SoftToken, tmp_path: Path) -> None:
    create(token, tmp_path, "vendor", "token")
    fields = json.loads((tmp_path / "vendor.json").read_text())
    fields["key_label"] = "ghost"
    (tmp_path / "vendor.json").write_text(json.dumps(fields))
    with pytest.raises(TokenError, match=r"^token micropay-test holds no key labelled ghost-sign$"):
        load_identity(tmp_path / "vendor.json")


def test_creation_refuses_a_taken_label_and_an_existing_descriptor(
    token: SoftToken, tmp_path: Path
) -> None:
    first = create(token, tmp_path, "vendor", "token")
    with pytest.raises(TokenError, match="already holds a key labelled vendor-sign"):
        create_token_keys(tmp_path / "again.json", token.spec("vendor"))
    assert not (tmp_path / "again.json").exists()
    with pytest.raises(KeyFileError, match="already exists"):
        create_token_keys(tmp_path / "vendor.json", token.spec("fresh"))
    assert guarded_objects(token, "fresh") == []
    reopened = load_identity(tmp_path / "vendor.json")
    assert reopened.sign_key == first.sign_key


def test_a_descriptor_for_other_keys_is_refused(token: SoftToken, tmp_path: Path) -> None:
    create(token, tmp_path, "vendor", "token")
    fields = json.loads((tmp_path / "vendor.json").read_text())
    fields["sign_key"] = "11" * 32
    (tmp_path / "vendor.json").write_text(json.dumps(fields))
    with pytest.raises(TokenError, match="key vendor-sign in token micropay-test is not the one"):
        load_identity(tmp_path / "vendor.json")


# The protocol on token keys.


def token_world(token: SoftToken, directory: Path, mode: AgreementMode) -> World:
    """``make_world``'s broker, vendor and buyer, each with keys in the token."""

    def keys(name: str) -> AgentKeys:
        create(token, directory, name, mode)
        return load_identity(directory / f"{name}.json")

    broker = BrokerCore("broker", keys("broker"), random=SeededRandom("broker"))
    world = World(MemoryNetwork(), broker)
    world.net.attach(broker, world.now)
    broker.publish_identity(world.now)
    world.pump()

    vendor_token = world.net.open_account(broker, "vendor1", "vendor", 0, "EUR", world.now)
    vendor = VendorCore("vendor1", keys("vendor1"), broker.info, default_terms())
    world.net.attach(vendor, world.now)
    vendor.enroll(vendor_token, world.now)
    world.pump()
    vendor.publish_offer(world.now)
    world.pump()
    world.vendors["vendor1"] = vendor

    buyer_token = world.net.open_account(broker, "buyer1", "buyer", 1_000_000, "EUR", world.now)
    buyer = BuyerCore("buyer1", keys("buyer1"), broker.info, random=SeededRandom("buyer1"))
    world.net.attach(buyer, world.now)
    buyer.enroll(buyer_token, world.now)
    world.pump()
    world.buyers["buyer1"] = buyer
    return world


@pytest.mark.parametrize("mode", MODES)
def test_enroll_open_pay_and_redeem_with_every_key_in_the_token(
    token: SoftToken, tmp_path: Path, mode: AgreementMode
) -> None:
    world = token_world(token, tmp_path, mode)
    assert events_of(world, "buyer1", CertificateReceived)
    assert events_of(world, "vendor1", CertificateReceived)
    buyer, vendor = world.buyers["buyer1"], world.vendors["vendor1"]

    paid = 0
    for _ in range(3):
        opened = buyer.open_channel("vendor1", 500, world.now)
        world.pump()
        for units in (1, 5, 2, 7):
            buyer.pay(opened.commitment_id, units, world.now)
            paid += units
        world.pump(0.01)
    accepted = events_of(world, "vendor1", PaymentAccepted)
    assert sum(event.amount for event in accepted) == paid

    assert vendor.redeem_all(world.now) > 0
    world.pump()
    assert sum(event.amount for event in events_of(world, "vendor1", RedemptionConfirmed)) == paid
    assert world.broker.totals.credited["vendor1"] == paid
    assert world.broker.totals.debited["buyer1"] == paid

    head = sign_head(world.broker.identity, "broker", 7, bytes(range(32)))
    verify_head(world.broker.info.sign_key, "broker", head)
