"""Weak public keys, computed: Ed25519 and X25519 points of small order, and other bad encodings.

Plain integer arithmetic on edwards25519 (RFC 8032, 5.1) and on Curve25519's u-line
(RFC 7748), independent of the libraries the protocol uses, so the tests check libsodium
and OpenSSL against the curve rather than against themselves. Slow (affine coordinates,
an inversion per addition), which is fine for a handful of points.

``forge_signature`` makes what a weak key is dangerous for: a signature that OpenSSL (and
RFC 8032's cofactorless check) accepts under a small-order key, made by someone who holds
no private key at all.
"""

from __future__ import annotations

import hashlib
from itertools import count
from typing import Final, TypeAlias

Point: TypeAlias = tuple[int, int]
"""An affine edwards25519 point ``(x, y)``."""

P: Final = 2**255 - 19
L: Final = 2**252 + 27742317777372353535851937790883648493
"""The order of the base point: the prime-order subgroup's."""
D: Final = -121665 * pow(121666, P - 2, P) % P
SQRT_M1: Final = pow(2, (P - 1) // 4, P)
IDENTITY: Final[Point] = (0, 1)
A_MONTGOMERY: Final = 486662


def _inverse(value: int) -> int:
    return pow(value, P - 2, P)


def edwards_add(first: Point, second: Point) -> Point:
    """The complete addition law of ``-x^2 + y^2 = 1 + d x^2 y^2``."""
    (x1, y1), (x2, y2) = first, second
    t = D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + y1 * x2) * _inverse(1 + t) % P,
        (y1 * y2 + x1 * x2) * _inverse(1 - t) % P,
    )


def scalar_mult(scalar: int, point: Point) -> Point:
    """``[scalar] point`` by double-and-add."""
    result = IDENTITY
    while scalar:
        if scalar & 1:
            result = edwards_add(result, point)
        point = edwards_add(point, point)
        scalar >>= 1
    return result


def recover_x(y: int, sign: int) -> int | None:
    """The ``x`` with parity ``sign`` of the point with ordinate ``y`` (any ``y``), if any."""
    y %= P
    x2 = (y * y - 1) * _inverse(D * y * y + 1) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    return P - x if x and x & 1 != sign else x


def encode(point: Point) -> bytes:
    """The canonical 32-byte encoding: ``y``, and the parity of ``x`` in the top bit."""
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def decode(raw: bytes) -> Point:
    """The point an encoding names, as lenient decoders read it (``y`` taken mod p)."""
    value = int.from_bytes(raw, "little")
    y = value & ((1 << 255) - 1)
    x = recover_x(y, value >> 255)
    if x is None:
        raise ValueError("not a point on edwards25519")
    return x, y % P


BASE: Final[Point] = (recover_x(4 * _inverse(5), 0) or 0, 4 * _inverse(5) % P)


def torsion_points() -> list[Point]:
    """The 8 points of order dividing 8: ``[k] T`` for a ``T`` of order 8, k = 0..7.

    ``[L] Q`` of any curve point ``Q`` lies in the torsion subgroup (the curve has
    ``8 L`` points); the first of order exactly 8 generates it.
    """
    for y in count(2):
        x = recover_x(y, 0)
        if x is None:
            continue
        torsion = scalar_mult(L, (x, y))
        if scalar_mult(4, torsion) != IDENTITY:
            return [scalar_mult(k, torsion) for k in range(8)]
    raise AssertionError("unreachable")


SMALL_ORDER_ED25519: Final = [encode(point) for point in torsion_points()]
"""The canonical encodings of the 8 small-order points, the identity first."""


def _with_top_bit(raw: bytes) -> bytes:
    return raw[:31] + bytes([raw[31] | 0x80])


NON_CANONICAL_SMALL_ORDER_ED25519: Final = [
    _with_top_bit(encode(IDENTITY)),  # x = 0 with the sign bit set: "negative zero"
    _with_top_bit(encode((0, P - 1))),
    (P + 1).to_bytes(32, "little"),  # y = p + 1, i.e. 1: the identity again
    _with_top_bit((P + 1).to_bytes(32, "little")),
    P.to_bytes(32, "little"),  # y = p, i.e. 0: the two points of order 4
    _with_top_bit(P.to_bytes(32, "little")),
]
"""Small-order points under encodings with ``y >= p`` or a sign bit for ``x = 0``."""


def non_canonical_encoding() -> bytes:
    """``y + p`` for the first small ``y`` on the curve: a point of large order, mis-encoded."""
    for y in range(2, 19):  # y + p < 2^255 only for y < 19
        x = recover_x(y, 0)
        if x is not None and scalar_mult(8, (x, y)) != IDENTITY:
            return (y + P).to_bytes(32, "little")
    raise AssertionError("no canonical y below 19 is on the curve")


def off_curve_encoding() -> bytes:
    """An encoding whose ``y`` has no ``x`` on the curve."""
    y = next(y for y in count(2) if recover_x(y, 0) is None)
    return y.to_bytes(32, "little")


def mixed_order(sign_key: bytes) -> bytes:
    """An honest key plus a point of order 8: on the curve, outside the prime-order subgroup."""
    return encode(edwards_add(decode(sign_key), torsion_points()[1]))


def forge_signature(key: bytes, message: bytes) -> bytes:
    """A signature over ``message`` under a small-order ``key``, without any private key.

    The cofactorless check is ``[S] B == R + [k] A`` with ``k = SHA-512(R || A || M)``.
    Take ``R = [r] B + T`` and ``S = r``: it holds when ``T + [k] A`` is the identity, which
    for a ``T`` drawn from the multiples of ``A`` (at most 8 of them) is a 1-in-8 chance
    per ``r`` at worst.
    """
    point = decode(key)
    if scalar_mult(8, point) != IDENTITY:
        raise ValueError("not a key of small order")
    multiples = [scalar_mult(j, point) for j in range(8)]
    for r in count(1):
        base = scalar_mult(r, BASE)
        for torsion in multiples:
            encoded_r = encode(edwards_add(base, torsion))
            digest = hashlib.sha512(encoded_r + key + message).digest()
            k = int.from_bytes(digest, "little") % L
            if edwards_add(torsion, scalar_mult(k % 8, point)) == IDENTITY:
                return encoded_r + r.to_bytes(32, "little")
    raise AssertionError("unreachable")


def montgomery_u(point: Point) -> int:
    """The Curve25519 ``u`` of an edwards25519 point: ``(1 + y) / (1 - y)`` (0 for the identity)."""
    _, y = point
    return 0 if y == 1 else (1 + y) * _inverse(1 - y) % P


def u_doubling_vanishes(u: int, times: int = 3) -> bool:
    """Whether ``u`` reaches the point at infinity within ``times`` x-only doublings.

    ``u(2Q) = (u^2 - 1)^2 / (4 u (u^2 + A u + 1))``: infinity when the denominator is 0.
    Three doublings kill exactly the points of order dividing 8, on the curve or its twist.
    """
    for _ in range(times):
        denominator = 4 * u * (u * u + A_MONTGOMERY * u + 1) % P
        if denominator == 0:
            return True
        u = (u * u - 1) ** 2 * _inverse(denominator) % P
    return False


def small_order_x25519() -> list[bytes]:
    """Every 32-byte X25519 key of small order: 14 encodings of 5 u-coordinates.

    The curve's torsion gives u = 0, 1 and the two of order 8; the twist adds u = -1, of
    order 4. X25519 reads u modulo p and ignores the top bit, so ``u + p`` (for u = 0, 1)
    and each encoding with the top bit set name the same points.
    """
    values = sorted({montgomery_u(point) for point in torsion_points()} | {P - 1})
    encodings = [u.to_bytes(32, "little") for u in [*values, P, P + 1]]
    return [*encodings, *(_with_top_bit(raw) for raw in encodings)]
