"""Crash-only supervision: a daemon's tasks run in one TaskGroup.

Any task the daemon cannot run without that ends stops it with one ``AgentFailedError``
naming it. Crash-only: an agent's state is rebuilt from its store at the next start, so stopping
loudly is always safe, and staying alive without the task never is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable


class AgentFailedError(Exception):
    """A task the agent cannot run without has stopped: the process must exit non-zero."""


class _MainEnded(Exception):  # noqa: N818 - a signal inside the group, not an error
    """Raised by the main task when it returns, so the group cancels everything else."""


async def first_failure(
    main: Awaitable[None],
    watched: dict[str, Awaitable[object]],
    alongside: Iterable[Awaitable[None]] = (),
) -> None:
    """Run ``main`` until it returns; if a watched awaitable ends first, stop and raise.

    ``main``, the ``watched`` awaitables and the ``alongside`` helpers run in one
    ``asyncio.TaskGroup``. When ``main`` returns, everything else is cancelled. A watched
    awaitable that ends, with an error or without, is a task the agent cannot run without:
    its end becomes one ``AgentFailedError`` naming it and the cause. A helper may end;
    if it fails, its error stops the agent. Errors leave unwrapped (the first one), so
    callers catch ``AgentFailedError`` as such.
    """

    async def run_main() -> None:
        await main
        raise _MainEnded

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(run_main(), name="main")
            for name, awaitable in watched.items():
                group.create_task(_watch(name, awaitable), name=name)
            for helper in alongside:
                group.create_task(_helper(helper))
    except BaseExceptionGroup as raised:
        first = next((e for e in _leaves(raised) if not isinstance(e, _MainEnded)), None)
        if first is not None:
            raise first from first.__cause__


async def _watch(name: str, awaitable: Awaitable[object]) -> None:
    cause: BaseException | None = None
    try:
        await awaitable
    except Exception as exc:  # noqa: BLE001 - every end of a watched task is reported
        cause = exc
    detail = f"{cause}" if isinstance(cause, AgentFailedError) else f"{cause!r}"
    raise AgentFailedError(f"{name} stopped: {detail}") from cause


async def _helper(awaitable: Awaitable[None]) -> None:
    await awaitable


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
