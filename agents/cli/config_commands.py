"""``micropay config check [FILE]``: is the configuration valid, and where each value comes from.

Like ``nginx -t``: check the file before a daemon trips over it, and see what every
option comes to once the environment and the defaults are applied. Exit 0 when valid;
an invalid file or variable exits 2 and a missing file 1, with the same one line a
daemon would print.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from agents.runtime.config_file import load_config
from agents.runtime.config_schema import GROUPS, TABLES, option_name
from agents.runtime.settings import config_path, settle


def cmd_config_check(args: argparse.Namespace) -> int:
    """Check the file and print every setting with its origin."""
    path = config_path(args.file)
    config = load_config(path)
    out = sys.stdout.write
    if path is None:
        out("no configuration file (give FILE or set MICROPAY_CONFIG):")
        out(" the environment and the defaults\n")
    else:
        out(f"{path}: valid\n")
    for table in ("mqtt", *GROUPS):
        group = "broker" if table == "mqtt" else table
        defaults: dict[str, Any] = {
            option_name(table, key): option.default for key, option in TABLES[table].items()
        }
        settled = settle(group, defaults, {}, config, os.environ)
        rows = [
            (key, settled[name].shown(name), settled[name].origin)
            for key, name in ((key, option_name(table, key)) for key in TABLES[table])
        ]
        width = max(len(key) for key, _, _ in rows)
        value_width = max(len(value) for _, value, _ in rows)
        out(f"\n[{table}]\n")
        for key, value, origin in rows:
            out(f"{key:<{width}} = {value:<{value_width}}  # {origin}\n")
    return 0


def register_config(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``micropay config check``."""
    config = commands.add_parser("config", help="check the configuration file")
    sub = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="check a configuration file and show every setting and where it comes from",
        description=(
            "Check FILE (default: MICROPAY_CONFIG) against the tables and keys the commands"
            " read ([mqtt], [broker], [vendor], [buyer]), then print every setting with"
            " where it comes from: an environment variable, FILE:LINE, or the default."
            " Exit 0 when valid, 2 when a key, a type or a value is wrong, 1 when the file"
            " cannot be read."
        ),
    )
    check.add_argument("file", nargs="?", type=Path, metavar="FILE", help="the TOML file")
    check.set_defaults(handler=cmd_config_check)
