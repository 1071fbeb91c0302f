"""Agent keys in a PKCS#11 token (smart card, HSM, SoftHSM2), used there, never let out.

python-pkcs11 rather than PyKCS11: typed (``py.typed``), objects rather than raw handles
and attribute lists, one exception class per ``CKR_*`` code, and the GIL released during
token calls. Both drive SoftHSM2's Ed25519, ECDH and HMAC alike.

The signing key is Ed25519 (``CKM_EDDSA``); ``derive_secret`` is HMAC-SHA256 with a
generic secret in the token, so what it derives from never exists outside; X25519 is in
the token or sealed by it (``pkcs11_agreement``). The key descriptor (``pkcs11_descriptor``)
says which token, which labels and which agreement mode.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pkcs11 import Mechanism
from pkcs11.types import SignMixin

from agents.runtime.key_errors import TokenError
from agents.runtime.pkcs11_agreement import (
    SEAL_INFO,
    Agreement,
    SealedAgreement,
    TokenAgreement,
)
from agents.runtime.pkcs11_descriptor import (
    AgreementMode,
    Descriptor,
    TokenSpec,
    reserve_descriptor,
    write_descriptor,
)
from agents.runtime.pkcs11_objects import (
    as_deriver,
    as_signer,
    destroy_labelled,
    find_private,
    find_public,
    generate_agree_key,
    generate_secret_key,
    generate_sign_key,
    labels,
    refuse_taken_labels,
)
from agents.runtime.pkcs11_pin import token_pin
from agents.runtime.pkcs11_session import TokenSession, open_session
from agents.runtime.private_files import make_private_dir
from protocol.errors import AuthenticationError

__all__ = ["TokenError", "TokenKeys", "TokenSpec", "create_token_keys", "open_token_keys"]

log = logging.getLogger(__name__)

SHARED_SECRETS_KEPT: Final = 1024
"""Peers whose shared secret stays cached: a token derivation costs ~0.6 ms."""


@dataclass(frozen=True, slots=True)
class TokenHeld:
    """What the token holds for one agent: its session, signing key and generic secret."""

    session: TokenSession
    signer: SignMixin
    sign_key: bytes
    secret: SignMixin


class TokenKeys:
    """``AgentKeys`` whose private keys stay in a PKCS#11 token."""

    def __init__(
        self, held: TokenHeld, spec: TokenSpec, agreement: Agreement, mode: AgreementMode
    ) -> None:
        self._session = held.session
        self.spec = spec
        self._signer = held.signer
        self._sign_key = held.sign_key
        self._secret = held.secret
        self._agreement = agreement
        self.agreement_mode: AgreementMode = mode
        self._shared: OrderedDict[bytes, bytes] = OrderedDict()
        self._shared_lock = threading.Lock()

    @property
    def sign_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._sign_key

    @property
    def agree_key(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        return self._agreement.agree_key

    def sign(self, tag: bytes, data: bytes) -> bytes:
        """Ed25519 signature over ``tag || data``, made in the token."""
        with self._session.use("signing"):
            return bytes(self._signer.sign(tag + data, mechanism=Mechanism.EDDSA))

    def shared_secret(self, peer_agree_key: bytes) -> bytes:
        """X25519 with a peer's public key, from a bounded cache after the first time."""
        with self._shared_lock:
            known = self._shared.get(peer_agree_key)
            if known is not None:
                self._shared.move_to_end(peer_agree_key)
                return known
        secret = self._agreement.exchange(peer_agree_key)
        with self._shared_lock:
            self._shared[peer_agree_key] = secret
            if len(self._shared) > SHARED_SECRETS_KEPT:
                self._shared.popitem(last=False)
        return secret

    def derive_secret(self, info: bytes) -> bytes:
        """HMAC-SHA256 of ``info`` under the token's generic secret."""
        return token_hmac(self._session, self._secret, info)


def token_hmac(session: TokenSession, secret: SignMixin, info: bytes) -> bytes:
    """``CKM_SHA256_HMAC`` in the token: 32 bytes only the token's secret can produce."""
    with session.use("deriving a secret"):
        return bytes(secret.sign(info, mechanism=Mechanism.SHA256_HMAC))


def create_token_keys(
    path: Path, spec: TokenSpec, agreement: AgreementMode | Literal["auto"] = "auto"
) -> TokenKeys:
    """Generate an agent's keys in the token and write their descriptor (0600) at ``path``.

    ``auto`` tries X25519 in the token and falls back to ``sealed``; the log and the
    descriptor say which. A relative ``pin_file`` is taken from the descriptor's directory.
    The descriptor is reserved first, so an existing one stops creation before the token
    is touched; a failure part way removes both what the token got and the file.
    """
    make_private_dir(path.parent)
    handle = reserve_descriptor(path)
    written = False
    try:
        session = open_session(spec.module, spec.token_label, _pin(path, spec))
        keys, sealed = _generate(session, spec, agreement)
        descriptor = Descriptor(
            backend="pkcs11",
            module=spec.module,
            token_label=spec.token_label,
            key_label=spec.key_label,
            agreement=keys.agreement_mode,
            sign_key=keys.sign_key.hex(),
            agree_key=keys.agree_key.hex(),
            sealed_agree_seed=None if sealed is None else sealed.hex(),
            pin_file=None if spec.pin_file is None else str(spec.pin_file),
            secret_label=spec.secret_label,
        )
        try:
            written = True
            write_descriptor(handle, descriptor)
        except BaseException:
            _remove(session, *_made_labels(spec))
            raise
    except BaseException:
        if not written:
            os.close(handle)
        path.unlink(missing_ok=True)
        raise
    return keys


def open_token_keys(path: Path, descriptor: Descriptor) -> TokenKeys:
    """Log in and find the descriptor's keys, checking they are the ones it records."""
    spec = descriptor.spec
    names = _names(spec)
    sign_key, agree_key = descriptor.public_keys
    session = open_session(spec.module, spec.token_label, _pin(path, spec))
    with session.use("opening keys") as opened:
        signer = as_signer(find_private(opened, spec.token_label, names["sign"]), names["sign"])
        found_sign = find_public(opened, spec.token_label, names["sign"])
        secret = as_signer(find_private(opened, spec.token_label, names["secret"]), names["secret"])
        if descriptor.agreement == "token":
            deriver = find_private(opened, spec.token_label, names["agree"])
            found_agree = find_public(opened, spec.token_label, names["agree"])
    if found_sign != sign_key:
        raise _not_recorded(names["sign"], spec, path)
    agreement: Agreement
    if descriptor.agreement == "token":
        if found_agree != agree_key:
            raise _not_recorded(names["agree"], spec, path)
        agreement = TokenAgreement(session, as_deriver(deriver, names["agree"]), agree_key)
    else:
        sealed = bytes.fromhex(descriptor.sealed_agree_seed or "")
        seal_key = token_hmac(session, secret, SEAL_INFO)
        agreement = SealedAgreement.unseal(seal_key, sealed, agree_key)
    held = TokenHeld(session, signer, sign_key, secret)
    return TokenKeys(held, spec, agreement, descriptor.agreement)


def _not_recorded(label: str, spec: TokenSpec, path: Path) -> TokenError:
    return TokenError(f"key {label} in token {spec.token_label} is not the one {path} records")


def _pin(path: Path, spec: TokenSpec) -> str:
    pin_file = spec.pin_file
    if pin_file is not None and not pin_file.is_absolute():
        pin_file = path.parent / pin_file
    return token_pin(pin_file, spec.token_label)


def _generate(
    session: TokenSession, spec: TokenSpec, agreement: AgreementMode | Literal["auto"]
) -> tuple[TokenKeys, bytes | None]:
    """The keys, and the sealed agreement scalar in ``sealed`` mode.

    With ``spec.secret_label`` the generic secret is the one already in the token under
    that label (a rotation's successor keys), not a new one.
    """
    names = _names(spec)
    with session.use("checking labels") as opened:
        refuse_taken_labels(opened, spec.token_label, spec.key_label)
    try:
        with session.use("generating keys") as opened:
            sign_key, signer = generate_sign_key(opened, names["sign"])
            if spec.secret_label is None:
                secret = generate_secret_key(opened, names["secret"])
            else:
                found = find_private(opened, spec.token_label, spec.secret_label)
                secret = as_signer(found, spec.secret_label)
        if agreement == "sealed":
            made: Agreement = SealedAgreement.generate()
            mode: AgreementMode = "sealed"
        else:
            made, mode = _agreement_in_token(session, spec, agreement == "auto")
        sealed = None
        if isinstance(made, SealedAgreement):
            sealed = made.seal(token_hmac(session, secret, SEAL_INFO))
    except BaseException:
        _remove(session, *_made_labels(spec))
        raise
    log.info("keys %s in token %s: agreement mode %s", spec.key_label, spec.token_label, mode)
    return TokenKeys(TokenHeld(session, signer, sign_key, secret), spec, made, mode), sealed


def _agreement_in_token(
    session: TokenSession, spec: TokenSpec, fall_back: bool
) -> tuple[Agreement, AgreementMode]:
    """X25519 generated in the token, proven against ``cryptography`` before it is kept."""
    label = labels(spec.key_label)["agree"]
    try:
        with session.use("generating an X25519 key") as opened:
            agree_key, deriver = generate_agree_key(opened, label)
        made = TokenAgreement(session, deriver, agree_key)
        _prove_x25519(made, spec.token_label)
    except TokenError as exc:
        _remove(session, label)
        if not fall_back:
            raise
        log.warning(
            "token %s cannot do X25519 (%s): the agreement key of %s is sealed instead",
            spec.token_label,
            exc,
            spec.key_label,
        )
        return SealedAgreement.generate(), "sealed"
    return made, "token"


def _prove_x25519(made: TokenAgreement, token_label: str) -> None:
    """One exchange with a fresh peer must give what ``cryptography`` computes."""
    probe = X25519PrivateKey.generate()
    probe_key = probe.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    try:
        expected = probe.exchange(X25519PublicKey.from_public_bytes(made.agree_key))
        agreed = made.exchange(probe_key)
    except (ValueError, AuthenticationError) as exc:
        raise TokenError(f"token {token_label} made an unusable X25519 key") from exc
    if agreed != expected:
        raise TokenError(f"token {token_label} computes X25519 wrongly")


def _names(spec: TokenSpec) -> dict[str, str]:
    """The token labels of the spec's objects (its own secret's, or the one it reuses)."""
    names = labels(spec.key_label)
    if spec.secret_label is not None:
        names["secret"] = spec.secret_label
    return names


def _made_labels(spec: TokenSpec) -> list[str]:
    """What creating ``spec`` generates: what a failed creation removes (not a reused secret)."""
    names = _names(spec)
    return [name for role, name in names.items() if role != "secret" or not spec.secret_label]


def _remove(session: TokenSession, *token_labels: str) -> None:
    try:
        with session.use("removing half-made keys") as opened:
            destroy_labelled(opened, *token_labels)
    except TokenError:
        log.exception("could not remove %s from token %s", token_labels, session.token_label)
