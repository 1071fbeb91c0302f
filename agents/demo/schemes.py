"""Who pays whom how in ``micropay demo --scheme``: shared by both demos.

Its own module, so that the in-memory demo need not import the process demo's daemons.
"""

from __future__ import annotations

from typing import Final, Literal

Scheme = Literal["payword", "scrip", "mixed"]
SCHEMES: Final[tuple[Scheme, ...]] = ("payword", "scrip", "mixed")
PayBy = Literal["payword", "scrip"]

MINT_VALUE: Final = 2_000
"""What a buyer buys at a time when its scrip for a vendor runs short: many payments' worth."""

SCRIP_VENDORS: Final[dict[Scheme, dict[str, Literal["off-line", "on-line"]]]] = {
    "payword": {},
    "scrip": {"news-stand": "off-line", "charger-7": "off-line"},
    # news-stand keeps a spent set of its own; charger-7 has the broker check each serial.
    "mixed": {"news-stand": "off-line", "charger-7": "on-line"},
}
"""Which vendors take scrip under each scheme, and how they stop double spending."""


def pay_by(scheme: Scheme, buyer: str, vendor: str) -> PayBy:
    """How ``buyer`` pays ``vendor`` under ``scheme``.

    Mixed: alice and carol pay news-stand with scrip and charger-7 by PayWord, bob the other
    way round, so each vendor takes both and each buyer uses both.
    """
    if scheme != "mixed":
        return scheme
    scrip_at = "charger-7" if buyer == "bob" else "news-stand"
    return "scrip" if vendor == scrip_at else "payword"


def takes(scheme: Scheme, vendor: str) -> str:
    """What ``vendor`` takes under ``scheme``, in words."""
    check = SCRIP_VENDORS[scheme].get(vendor)
    if check is None:
        return "PayWord"
    return "PayWord and scrip" + (", each serial checked on-line" if check == "on-line" else "")


def paid_by(scheme: Scheme, vendor: str) -> str:
    """How a scrip payment at ``vendor`` was checked, for a summary's table."""
    online = SCRIP_VENDORS[scheme].get(vendor) == "on-line"
    return "scrip, serial checked on-line" if online else "scrip"


def how(scheme: Scheme) -> str:
    """Who pays whom how, for a progress line."""
    if scheme == "payword":
        return "by PayWord"
    if scheme == "scrip":
        return "with scrip, minted as needed"
    return "news-stand by scrip from alice and carol, by PayWord from bob; charger-7 the other way"
