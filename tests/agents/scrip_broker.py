"""Test support: the broker's scrip answers over a real Mosquitto, played from its keys.

The broker daemon does not mint yet, so once the agents are enrolled its daemon stops and
this stand-in takes the ``broker`` MQTT user: it answers ``scrip?`` with the ``Minted`` of
``tests/support/scrip_mint.py`` and a ``deposit`` with the ``Deposited`` of 3.8, step 6
(checked no further: the deposit rules are the broker's). Once the broker mints, the tests
keep the daemon running instead (``ScripBroker`` goes).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from protocol import topics
from protocol.codec import decode_scrip, decode_tagged_scrip
from protocol.crypto import AgentKeys, MacKey, pair_key
from protocol.envelope import Auth, open_body, parse, seal, verify_mac
from protocol.messages import Body, Certificate, Deposit, Deposited, MintRequest
from tests.agents.conftest import Endpoint
from tests.support.scrip_mint import minted_reply


@dataclass
class ScripBroker:
    """Answers mints and deposits as the broker, for the accounts it is told about."""

    keys: AgentKeys
    broker_id: str
    vendors: dict[str, Certificate]
    agree_keys: dict[str, bytes]
    serials: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    outstanding: dict[int, int] = field(default_factory=dict)  # serial -> value left
    credited: dict[int, int] = field(default_factory=dict)
    deposits: list[Deposit] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def serving(self, mosquitto_port: int) -> AsyncIterator[ScripBroker]:
        """Answer on the ``broker`` user until the block ends."""
        async with Endpoint(mosquitto_port).client("broker") as client:
            await client.subscribe(topics.inbox_filter(self.broker_id), qos=1)
            task = asyncio.create_task(self._answer(client))
            try:
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _answer(self, client: object) -> None:
        async for message in client.messages:  # type: ignore[attr-defined]
            topic, payload = str(message.topic), bytes(message.payload)
            parsed = parse(payload)
            sender = parsed.header.sender
            key = MacKey(pair_key(self.keys, self.broker_id, self.agree_keys[sender], sender))
            verify_mac(parsed, topic, key)
            reply = self._reply(sender, open_body(parsed), time.time())
            if reply is not None:
                now = time.time()
                out = topics.inbox(sender, self.broker_id)
                sealed = seal(
                    out, reply, auth=Auth.PAIR, sender=self.broker_id, recipient=sender,
                    counter=int(now * 1_000_000), now=now, key=key, corr=parsed.header.corr,
                )  # fmt: skip
                await client.publish(out, sealed, qos=1)  # type: ignore[attr-defined]

    def _reply(self, sender: str, body: Body, now: float) -> Body | None:
        match body:
            case MintRequest():
                serial = next(self.serials)
                self.outstanding[serial] = body.value
                return minted_reply(
                    self.keys, self.broker_id, self.vendors[body.vendor], sender,
                    self.agree_keys[sender], body.value, body.request, now, serial,
                )  # fmt: skip
            case Deposit():
                self.deposits.append(body)
                spent = decode_scrip(decode_tagged_scrip(body.spent).body)
                left = spent.value - body.price
                credit = self.outstanding[spent.serial] - left
                self.outstanding[spent.serial] = left
                total = self.credited.get(spent.serial, 0) + credit
                self.credited[spent.serial] = total
                return Deposited(spent.serial, spent.generation, total, left, body.change)
            case _:
                return None
