"""A buyer's or vendor's key rotation: one short session with the broker over MQTT.

The new keys are made (and durable) before the request leaves; the certificate is
stored with everything else the session received, by the agent's own store, before the
new key file replaces the old. Run it with the vendor daemon stopped: the data
directory's lock says so. Interrupted, it is simply run again: the same pending keys
are asked for, and the broker answers the repeat with the same certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.daemons.agent_keys import adopt_pending_keys, pending_keys
from agents.daemons.agent_store import AgentStore
from agents.daemons.event_waiters import EventWaiters
from agents.runtime.loop import AgentLoop, Clock
from agents.runtime.mqtt import MqttSettings, open_link
from protocol.agent_endpoint import REKEY_CORR
from protocol.buyer import BuyerCore
from protocol.events import KeysRekeyed, PeerError
from protocol.vendor import VendorCore


class RekeyError(Exception):
    """The broker refused the new keys, or did not answer."""


def _refused(event: object) -> str | None:
    if isinstance(event, PeerError) and event.corr == REKEY_CORR:
        return f"the broker refused the new keys: {event.code}: {event.detail}"
    return None


async def rekey_agent(  # noqa: PLR0913 - the agent's parts and how long to wait
    directory: Path,
    core: BuyerCore | VendorCore,
    store: AgentStore,
    mqtt: MqttSettings,
    timeout: float = 30.0,  # noqa: ASYNC109
    clock: Clock = time.time,
) -> KeysRekeyed:
    """Ask the broker to certify fresh keys for this agent; they are its own on return.

    Closes ``store`` (and so gives the data directory up) whatever happens.
    """
    waiters: EventWaiters[Any] = EventWaiters(RekeyError)

    async def persist(events: Sequence[Any]) -> None:
        await store.record(events)
        waiters.deliver(events)

    loop: AgentLoop[Any] = AgentLoop(core, open_link(mqtt), persist, clock=clock)
    runner = asyncio.create_task(loop.run(), name="rekey-loop")
    try:
        if core.certified is None:
            raise RekeyError("not enrolled: there is no certificate to replace")
        new = pending_keys(directory)
        answered = waiters.expect(KeysRekeyed, refused=_refused)
        async with asyncio.timeout(timeout):
            await loop.connected.wait()
        await loop.act(lambda now: core.rekey(new, now))
        rekeyed = await waiters.answer(
            answered, timeout, f"the broker did not answer the rekey within {timeout:g} s"
        )
        adopt_pending_keys(directory)  # the certificate is stored: the keys are ours now
        await loop.drain(5.0)
    except TimeoutError as exc:
        settings = mqtt
        raise RekeyError(f"could not reach MQTT at {settings.host}:{settings.port}") from exc
    finally:
        loop.stopping.set()
        with contextlib.suppress(Exception):
            await runner
        await store.close()
    return rekeyed
