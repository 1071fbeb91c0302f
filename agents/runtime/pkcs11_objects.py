"""The key objects in a token: generated there, found again by label, checked on the way.

Every private object is made with ``CKA_TOKEN`` (it outlives the session),
``CKA_SENSITIVE`` (its value is never readable) and not ``CKA_EXTRACTABLE`` (it can never
be wrapped out, even encrypted); opening refuses a key without those, so keys imported
into the token in the clear are not silently taken for keys born there.
"""

from __future__ import annotations

from typing import Any, Final

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11.types import DeriveMixin, SignMixin
from pkcs11.util.ec import encode_named_curve_parameters

from agents.runtime.key_errors import TokenError
from protocol.crypto import KEY_SIZE

ED25519_OID: Final = "1.3.101.112"
X25519_OID: Final = "1.3.101.110"
SECRET_BITS: Final = 256
OCTET_STRING: Final = 0x04

GUARDED: Final[dict[Attribute, Any]] = {
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
}


def labels(key_label: str) -> dict[str, str]:
    """The token labels of one agent's objects, by role."""
    return {role: f"{key_label}-{role}" for role in ("sign", "secret", "agree")}


def refuse_taken_labels(session: pkcs11.Session, token_label: str, key_label: str) -> None:
    """Creation must not shadow keys already in the token under the same labels."""
    for label in labels(key_label).values():
        if list(session.get_objects({Attribute.LABEL: label})):
            raise TokenError(f"token {token_label} already holds a key labelled {label}")


def generate_sign_key(session: pkcs11.Session, label: str) -> tuple[bytes, SignMixin]:
    """An Ed25519 key pair generated in the token; the raw public key and the private key."""
    public, private = session.generate_keypair(
        KeyType.EC_EDWARDS,
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        label=label,
        store=True,
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        public_template={Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
        private_template=GUARDED,
    )
    return raw_point(public[Attribute.EC_POINT]), as_signer(private, label)


def generate_agree_key(session: pkcs11.Session, label: str) -> tuple[bytes, DeriveMixin]:
    """An X25519 key pair generated in the token.

    There is no ``CKM_EC_MONTGOMERY_KEY_PAIR_GEN`` in SoftHSM2 2.6; its Edwards generator
    given the X25519 curve makes a Montgomery key that ``CKM_ECDH1_DERIVE`` then uses.
    Tokens that refuse this fail here, and ``auto`` creation falls back to ``sealed``.
    """
    public, private = session.generate_keypair(
        KeyType.EC_EDWARDS,
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        label=label,
        store=True,
        capabilities=MechanismFlag.DERIVE,
        public_template={Attribute.EC_PARAMS: encode_named_curve_parameters(X25519_OID)},
        private_template=GUARDED,
    )
    return raw_point(public[Attribute.EC_POINT]), as_deriver(private, label)


def generate_secret_key(session: pkcs11.Session, label: str) -> SignMixin:
    """A 256-bit generic secret for HMAC-SHA256, generated in the token."""
    key = session.generate_key(
        KeyType.GENERIC_SECRET,
        SECRET_BITS,
        label=label,
        store=True,
        capabilities=MechanismFlag.SIGN,
        template=GUARDED,
    )
    return as_signer(key, label)


def find_private(session: pkcs11.Session, token_label: str, label: str) -> pkcs11.Key:
    """The guarded private or secret key labelled ``label``."""
    found = [
        key
        for kind in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY)
        for key in session.get_objects({Attribute.CLASS: kind, Attribute.LABEL: label})
    ]
    if not found:
        raise TokenError(f"token {token_label} holds no key labelled {label}")
    if len(found) > 1:
        raise TokenError(f"token {token_label} holds {len(found)} keys labelled {label}")
    key = found[0]
    if not key[Attribute.SENSITIVE] or key[Attribute.EXTRACTABLE]:
        raise TokenError(f"key {label} in token {token_label} is readable or extractable")
    if not isinstance(key, pkcs11.Key):
        raise TokenError(f"object {label} in token {token_label} is not a key")
    return key


def find_public(session: pkcs11.Session, token_label: str, label: str) -> bytes:
    """The raw public key of the pair labelled ``label``."""
    found = list(
        session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: label})
    )
    if len(found) != 1:
        raise TokenError(f"token {token_label} holds {len(found)} public keys labelled {label}")
    return raw_point(found[0][Attribute.EC_POINT])


def raw_point(ec_point: bytes) -> bytes:
    """A 32-byte public key from ``CKA_EC_POINT``, DER-wrapped (as the spec says) or raw."""
    if len(ec_point) == KEY_SIZE:
        return ec_point
    if len(ec_point) == KEY_SIZE + 2 and ec_point[:2] == bytes([OCTET_STRING, KEY_SIZE]):
        return ec_point[2:]
    raise TokenError(f"the token returned a public key of {len(ec_point)} bytes, not 32")


def as_signer(key: object, label: str) -> SignMixin:
    """The key as something that signs (``CKA_SIGN``), or a clear refusal."""
    if not isinstance(key, SignMixin):
        raise TokenError(f"key {label} cannot sign (CKA_SIGN is false)")
    return key


def as_deriver(key: object, label: str) -> DeriveMixin:
    """The key as something that derives (``CKA_DERIVE``), or a clear refusal."""
    if not isinstance(key, DeriveMixin):
        raise TokenError(f"key {label} cannot derive (CKA_DERIVE is false)")
    return key


def destroy_labelled(session: pkcs11.Session, *token_labels: str) -> None:
    """Remove what a failed creation left in the token under these labels."""
    for label in token_labels:
        for found in list(session.get_objects({Attribute.LABEL: label})):
            found.destroy()
