"""Commands that wait for an answer: futures resolved by the next durable event of a kind.

A buyer command registers what it waits for (``expect``) before it acts, so an answer
cannot slip past; the agent hands every batch of events to ``deliver`` once they are
stored. A peer's refusal ends the wait at once, with the reason the caller words.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

E = TypeVar("E")
W = TypeVar("W")


class EventWaiters(Generic[E]):
    """The futures waiting on one agent's events."""

    def __init__(self, error: Callable[[str], Exception]) -> None:
        self._error = error
        self._waiting: dict[asyncio.Future[Any], Callable[[E], None]] = {}

    def expect(
        self,
        kind: type[W],
        matches: Callable[[W], bool] | None = None,
        *,
        refused: Callable[[E], str | None] | None = None,
    ) -> asyncio.Future[W]:
        """The next durable event of ``kind`` (that ``matches``); register before acting.

        An event for which ``refused`` gives a reason ends the wait with that reason.
        """
        future: asyncio.Future[W] = asyncio.get_running_loop().create_future()

        def offer(event: E) -> None:
            if future.done():
                return
            if isinstance(event, kind) and (matches is None or matches(event)):
                future.set_result(event)
            elif refused is not None and (reason := refused(event)) is not None:
                future.set_exception(self._error(reason))

        self._waiting[future] = offer
        return future

    async def answer(
        self,
        future: asyncio.Future[W],
        timeout: float,  # noqa: ASYNC109
        silence: str = "",
    ) -> W:
        """Wait for what ``expect`` registered; the error (``silence``) after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError as exc:
            raise self._error(silence or f"no answer within {timeout:g} s") from exc
        finally:
            self.forget(future)

    def forget(self, future: asyncio.Future[Any]) -> None:
        """Stop waiting (a refusal that came too late to tell is read and dropped)."""
        self._waiting.pop(future, None)
        if future.done() and not future.cancelled():
            future.exception()
        future.cancel()

    def deliver(self, events: Iterable[E]) -> None:
        """Offer each stored event to every waiter, in order."""
        for event in events:
            for offer in list(self._waiting.values()):
                offer(event)
