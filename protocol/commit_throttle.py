"""Caps the signature work a peer can cause with commitments that fail their checks.

A first ``commit`` is the one message a vendor must verify (two Ed25519 signatures)
before it can check the MAC. Failures are counted per sender over a window, and a sender
over its budget is refused before any signature check. Memory is bounded: at most
``MAX_THROTTLED_SENDERS`` senders are counted at once.
"""

from __future__ import annotations

from protocol.errors import ThrottledError

MAX_THROTTLED_SENDERS = 10_000
"""Senders whose failed commitments are counted at once (bounded memory)."""


class CommitThrottle:
    """Failed commitments per sender: (count, window start)."""

    def __init__(self, budget: int, window: float) -> None:
        self.budget = budget
        self.window = window
        self._failures: dict[str, tuple[int, float]] = {}

    def check(self, sender: str, now: float) -> None:
        """Refuse, before any signature check, a sender whose recent commits kept failing."""
        failures, since = self._failures.get(sender, (0, now))
        if now - since > self.window:
            del self._failures[sender]
        elif failures >= self.budget:
            raise ThrottledError(f"{failures} failed commitments in the last minute")

    def failed(self, sender: str, now: float) -> None:
        """Count one failed commitment of ``sender``."""
        failures, since = self._failures.get(sender, (0, now))
        if not failures and len(self._failures) >= MAX_THROTTLED_SENDERS:
            self.forget(now)
            if len(self._failures) >= MAX_THROTTLED_SENDERS:
                return  # bounded memory first; the ACL already binds senders to MQTT users
        self._failures[sender] = (failures + 1, since)

    def forget(self, now: float) -> None:
        """Drop the counts whose window has passed."""
        window = self.window
        for sender in [s for s, (_, t) in self._failures.items() if now - t > window]:
            del self._failures[sender]

    def __len__(self) -> int:
        return len(self._failures)
