"""The buyer's rules that keep no state: checks before paying, steps, what vendors answer.

What an honest wallet checks before it pays (the item and its price, the credit limit, a
revoked certificate), vendors enforce themselves. Checking first lets the buyer say why,
with the numbers, instead of waiting for a refusal, or for nothing at all: a vendor cannot
even authenticate the commit of a revoked buyer, so it never answers one.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol.buyer_channel import Channel
from protocol.events import PaymentRefused, PaywordSpent, PeerError, StateBehind
from protocol.messages import Certificate, Error, Offer
from protocol.money_rules import amount_for
from protocol.wording import counted

CORR_SIZE = 8


def payment_corr(index: int) -> bytes:
    """A payment's correlation id: its index, so a refusal names the payment it refuses."""
    return index.to_bytes(CORR_SIZE, "big")


def refused_index(corr: bytes) -> int | None:
    """The index of the payment an ``Error`` refuses (``None``: it refuses no payment)."""
    return int.from_bytes(corr, "big") if len(corr) == CORR_SIZE else None


def jumped_a_gap(channel: Channel, error: Error) -> bool:
    """Whether a ``payment`` refusal may be a jump over paywords lost on the way.

    While units below the newest step are unacknowledged, a payment lost in between (by a
    vendor that crashed, by Mosquitto) leaves a gap that the payments after it jump over;
    the retransmission from the last receipt fills it.
    """
    return error.code == "payment" and channel.acknowledged < channel.stepped_from


def vendor_refusal(channel: Channel, error: Error, corr: bytes) -> list[PeerError | PaymentRefused]:
    """A vendor's ``Error`` on a chain; ``PaymentRefused`` too if it refuses the newest payment.

    A refused step below the newest (a retransmission under what the vendor holds) is
    settled by a later receipt, and so is a jump over a gap (``jumped_a_gap``); the newest
    payment refused for its own sake is the vendor's last word.
    """
    events: list[PeerError | PaymentRefused] = [
        PeerError(channel.vendor, error.code, error.detail, corr)
    ]
    if refused_index(corr) == channel.spent and not jumped_a_gap(channel, error):
        events.append(
            PaymentRefused(channel.id, channel.vendor, channel.spent, error.code, error.detail)
        )
    return events


def payment_steps(start: int, end: int, max_jump: int) -> list[int]:
    """The indices that pay from ``start`` to ``end`` in jumps of at most ``max_jump``.

    The remainder goes first and the last step is the largest: the last one names the
    item, and the vendor prices an item by the units that one payment adds.
    """
    total = end - start
    if total <= 0:
        return []
    first = total % max_jump or max_jump
    return list(range(start + first, end + 1, max_jump))


def item_refusal(vendor: str, offer: Offer, item: str, units: int, max_jump: int) -> str | None:
    """Why a payment of ``units`` for ``item`` would be refused (``None``: it would not)."""
    prices = {offered.item: offered.price for offered in offer.items}
    price = prices.get(item)
    if price is None:
        offered = ", ".join(f"{o.item} at {o.price}" for o in offer.items) or "no named items"
        return f"{vendor} does not offer {item!r} (it offers {offered})"
    unit_value = offer.unit_value
    step = min(units, max_jump)  # the last step, the one naming the item (payment_steps)
    if amount_for(step, unit_value) >= price:
        return None
    needed = -(-price // unit_value)
    if needed > max_jump:
        return (
            f"{item!r} costs {price} at {vendor}, more than one payment there can carry"
            f" ({counted(max_jump, 'unit')} of {unit_value})"
        )
    return (
        f"{item!r} costs {price} at {vendor},"
        f" but a payment of {counted(units, 'unit')} of {unit_value}"
        f" pays {amount_for(units, unit_value)}: pay at least {counted(needed, 'unit')}"
    )


def committed(channels: Iterable[Channel], now: float) -> int:
    """What a vendor counts against the limit: paid, or still payable (not expired or ended)."""
    now_ms = int(now * 1000)
    return sum(
        amount_for(
            c.chain.length if now_ms <= c.not_after and not c.ended else c.spent, c.unit_value
        )
        for c in channels
    )


def pay_refusal(  # noqa: PLR0913 - the certificate, the vendor's terms and the wallet
    certified: Certificate | None,
    revoked: frozenset[int],
    vendor: str,
    offer: Offer,
    channels: list[Channel],
    plan: list[int],
    item: str,
    paid: int,
    now: float,
) -> str | None:
    """Why an honest wallet would not make the payments of ``plan`` (units each) now.

    ``channels`` are this wallet's chains with ``vendor``; ``paid`` is what the wallet has
    paid in all, at every vendor. ``None``: nothing it can see stands in the way.
    """
    if certified is None:
        return "not enrolled"
    if certified.serial in revoked:
        return (
            f"your certificate (serial {certified.serial}) is revoked: vendors refuse your"
            " payments and new chains; the broker's operator can say why"
        )
    if item and (refused := item_refusal(vendor, offer, item, min(plan), offer.max_jump)):
        return refused
    return credit_refusal(certified, vendor, offer, channels, sum(plan), paid, now)


def credit_refusal(  # noqa: PLR0913 - the certificate, the vendor's terms and the wallet
    certified: Certificate,
    vendor: str,
    offer: Offer,
    channels: list[Channel],
    units: int,
    paid: int,
    now: float,
) -> str | None:
    """Why paying ``units`` at ``vendor`` would pass the credit limit (``None``: it fits).

    ``channels`` are this wallet's chains with ``vendor``; ``paid`` is what the wallet has
    paid in all, at every vendor. The broker revokes a buyer whose debits pass its limit,
    and a vendor refuses a chain that would take what it could claim past the limit.
    """
    limit, amount = certified.credit_limit, amount_for(units, offer.unit_value)
    if paid + amount > limit:
        return (
            f"{counted(units, 'unit')} ({amount}) would pass your credit limit of {limit}:"
            f" {paid} is paid already, {max(limit - paid, 0)} is left"
        )
    if any(c.payable(units, now) for c in channels):
        return None
    if units > offer.max_length:
        return f"{vendor} takes chains of at most {offer.max_length} units, not {units}"
    room = (limit - committed(channels, now)) // offer.unit_value
    if units <= room:
        return None
    left = ""
    if channels:
        newest = channels[-1]
        left = f"; the chain open there has {newest.remaining} of {newest.chain.length} units left"
    return (
        f"{vendor} would take a new chain of at most {max(room, 0)} units, not {units}: your"
        f" credit limit is {limit} and {committed(channels, now)} is already paid or still"
        f" payable there{left}"
    )


def wallet_behind(channel: Channel, index: int) -> list[StateBehind | PaywordSpent]:
    """The vendor holds paywords beyond what this wallet says it spent.

    Only this chain's seed could have produced them, so the wallet is older than what it
    spent (restored from a backup?). Skipping to the vendor's index costs nothing: a
    payword is only ever charged when the vendor redeems it.
    """
    spent = channel.spent
    reserved = channel.reserve(index, 0)
    channel.spent = index
    return [
        StateBehind(
            "ours",
            f"{channel.vendor} acknowledges index {index} on commitment"
            f" {channel.id.hex()[:16]} but this wallet spent only {spent}: the wallet is"
            f" older than what it spent (restored from a backup?); going on from {index}",
        ),
        PaywordSpent(channel.id, index, reserved),
    ]
