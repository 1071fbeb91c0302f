"""``micropay keys rotate``: new signing keys for the broker, a buyer or a vendor.

The broker rotates offline (its daemon stopped): the new key signs a statement with the
old one, the ledger records it, and ``broker.pub.json`` names the new key; agents
configured with the old file follow the statement the daemon publishes. A buyer or a
vendor asks the broker over MQTT to certify new keys on the authority of its current
certificate, which is then revoked.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from agents.cli.options import CommandError, add_common, mqtt_settings, prepare, print_json
from agents.cli.status_commands import party_dir
from agents.daemons.agent_rekey import RekeyError, rekey_agent
from agents.daemons.broker_files import read_public
from agents.daemons.broker_rotation import rotate_broker_key
from agents.daemons.buyer_agent import BuyerAgent
from agents.daemons.vendor_agent import VendorAgent
from agents.runtime.settings import bounded, require
from protocol.events import KeysRekeyed
from protocol.vendor import VendorTerms

ROLES = ("broker", "buyer", "vendor")


def add_rotate_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``rotate`` to the ``keys`` command group."""
    rotate = subparsers.add_parser(
        "rotate",
        help="replace this party's signing keys (the broker's, or a buyer's or vendor's)",
        description=(
            "broker: rotate the broker's signing key with its daemon stopped; the old key"
            " signs the new one into the ledger and broker.pub.json names it, and agents"
            " follow without reconfiguration. buyer, vendor: make new keys and have the"
            " broker certify them on the authority of the current certificate (needs the"
            " broker reachable over MQTT; stop the vendor daemon first); the old"
            " certificate is revoked, chains opened under it end."
        ),
    )
    rotate.add_argument("role", choices=ROLES, help="whose keys")
    add_common(rotate)
    rotate.add_argument("--name", help="buyer or vendor: the account name")
    rotate.add_argument("--broker-pub", type=Path, help="buyer or vendor: broker.pub.json")
    rotate.add_argument(
        "--timeout", type=bounded("timeout", float), help="seconds to wait for the broker"
    )
    rotate.set_defaults(handler=cmd_keys_rotate)


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Rotate the keys of the party whose data directory is given."""
    if args.role == "broker":
        prepare(args, "broker", {"data_dir": Path("micropay-broker")})
        rotated = asyncio.run(rotate_broker_key(Path(args.data_dir)))
        print_json(
            {
                "rotated": "broker",
                "generation": rotated.generation,
                "retired_sign_key": rotated.old_sign_key.hex(),
                "sign_key": rotated.new_sign_key.hex(),
                "ledger_seq": rotated.seq,
                "key_file": str(rotated.key_file),
            }
        )
        return 0
    defaults = {"data_dir": None, "name": None, "broker_pub": None, "timeout": 30.0}
    prepare(args, args.role, defaults)
    require(args, "name", "broker_pub")
    try:
        rekeyed = asyncio.run(_rekey(args))
    except RekeyError as exc:
        raise CommandError(str(exc)) from exc
    print_json(
        {
            "rotated": args.name,
            "certificate_serial": rekeyed.serial,
            "revoked_serial": rekeyed.old_serial,
        }
    )
    return 0


async def _rekey(args: argparse.Namespace) -> KeysRekeyed:
    data_dir = party_dir(args)
    info = read_public(args.broker_pub)
    mqtt = mqtt_settings(args, args.name)
    if args.role == "buyer":
        buyer = await BuyerAgent.open(data_dir, args.name, info, mqtt)
        return await rekey_agent(data_dir, buyer.core, buyer.store, mqtt, float(args.timeout))
    vendor = await VendorAgent.open(data_dir, args.name, info, VendorTerms(), mqtt)
    return await rekey_agent(data_dir, vendor.core, vendor.store, mqtt, float(args.timeout))
