"""In-process agents on a real Mosquitto: a broker daemon, vendors and buyers as tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agents.daemons.broker_daemon import BrokerDaemon
from agents.daemons.broker_files import init_broker
from agents.daemons.broker_service import BrokerService
from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.operator_client import operator_request
from agents.daemons.operator_protocol import AccountOpened, AccountRole, OpenAccount
from agents.daemons.vendor_agent import VendorAgent
from protocol.endpoint import BrokerInfo
from protocol.vendor import VendorTerms
from tests.agents.conftest import Broker


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling a core's state
            await asyncio.sleep(0.02)


@dataclass
class Harness:
    root: Path
    mosquitto: Broker
    info: BrokerInfo | None = None
    daemon: BrokerDaemon | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    vendors: dict[str, VendorAgent] = field(default_factory=dict)

    async def start_broker(self, witness_interval: float = 0.2) -> BrokerDaemon:
        if self.info is None:
            self.info = await init_broker(self.root / "broker", "broker")
        service = await BrokerService.open(self.root / "broker")
        self.daemon = BrokerDaemon(service, self.mosquitto.user("broker"), witness_interval)
        self.tasks.append(asyncio.create_task(self.daemon.run()))
        await asyncio.wait_for(self.daemon.loop.connected.wait(), 10)
        return self.daemon

    async def open_account(self, name: str, role: AccountRole, credit_limit: int = 10**6) -> bytes:
        answer = await operator_request(
            self.root / "broker",
            OpenAccount(account=name, role=role, credit_limit=credit_limit),
        )
        assert isinstance(answer, AccountOpened), answer
        return bytes.fromhex(answer.token)

    async def start_vendor(self, name: str, terms: VendorTerms | None = None) -> VendorAgent:
        assert self.info is not None
        token = await self.open_account(name, "vendor", 0)
        vendor = await VendorAgent.open(
            self.root / name, name, self.info, terms or VendorTerms(), self.mosquitto.user(name)
        )
        vendor.token = token
        self.tasks.append(asyncio.create_task(vendor.run()))
        await wait_until(lambda: bool(vendor.core.certificate))
        self.vendors[name] = vendor
        return vendor

    async def buyer(self, name: str) -> BuyerAgent:
        assert self.info is not None
        return await BuyerAgent.open(self.root / name, name, self.info, self.mosquitto.user(name))

    async def enroll_buyer(self, name: str) -> None:
        token = await self.open_account(name, "buyer")
        buyer = await self.buyer(name)
        await buyer.run(lambda: buyer.enroll(token))

    async def stop(self) -> None:
        for vendor in self.vendors.values():
            await vendor.shutdown(within=5)
        if self.daemon is not None:
            await self.daemon.stop()
        for task in self.tasks:
            await asyncio.wait_for(task, 20)
