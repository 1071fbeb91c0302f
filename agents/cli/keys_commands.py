"""``micropay keys``: create an agent's keys in a file or a PKCS#11 token, and show them.

The key file of a data directory (``broker.key`` or ``agent.key``) either holds the seeds
(the ``file`` backend, for development) or only says where the keys live (``pkcs11``: the
module, the token and the key label; the keys themselves never leave the token). Daemons
open whichever they find, so ``keys init`` is run once, before ``broker init`` or the
first ``vendor run`` / ``buyer enroll``; without it they make file keys as before.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Final

from agents.cli.keys_rotate import add_rotate_parser
from agents.cli.options import CommandError, print_json
from agents.runtime.private_files import make_private_dir

KEY_FILES: Final = {"broker": "broker.key", "vendor": "agent.key", "buyer": "agent.key"}
MODULE_ENV: Final = "MICROPAY_PKCS11_MODULE"
TOKEN_ENV: Final = "MICROPAY_PKCS11_TOKEN"  # noqa: S105 - a variable name, not a secret


def key_file(directory: Path) -> Path:
    """The key file of an existing data directory, whichever role it belongs to."""
    for name in dict.fromkeys(KEY_FILES.values()):
        if (directory / name).is_file():
            return directory / name
    raise CommandError(f"{directory} holds no key file (broker.key or agent.key)")


def cmd_keys_init(args: argparse.Namespace) -> int:
    """Create keys for one data directory, in a file or in a token."""
    directory: Path = args.data_dir
    path = directory / KEY_FILES[args.role]
    if path.exists():
        raise CommandError(f"{path} already exists; refusing to replace keys")
    make_private_dir(directory)
    if args.backend == "file":
        from agents.runtime.keystore import create_identity  # noqa: PLC0415 - keep --help fast

        create_identity(path)
    else:
        from agents.runtime.keys_pkcs11 import TokenSpec, create_token_keys  # noqa: PLC0415

        module = args.pkcs11_module or os.environ.get(MODULE_ENV)
        token = args.token_label or os.environ.get(TOKEN_ENV)
        if not module:
            raise CommandError(f"--backend pkcs11 needs --pkcs11-module (or env {MODULE_ENV})")
        if not token:
            raise CommandError(f"--backend pkcs11 needs --token-label (or env {TOKEN_ENV})")
        label = args.key_label or directory.resolve().name
        pin_file = None if args.pin_file is None else args.pin_file.resolve()
        spec = TokenSpec(module, token, label, pin_file)
        create_token_keys(path, spec, agreement=args.agreement)
    return _show(path, as_json=True)


def cmd_keys_show(args: argparse.Namespace) -> int:
    """Print where a data directory's keys live and their public halves (no PIN needed)."""
    return _show(key_file(args.data_dir), as_json=args.json)


def cmd_keys_softhsm_init(args: argparse.Namespace) -> int:
    """Create a SoftHSM2 token for development, its user PIN written to a 0600 file."""
    from agents.ops import softhsm  # noqa: PLC0415 - keep --help fast
    from agents.ops.mosquitto import generated_password  # noqa: PLC0415
    from agents.runtime.private_files import write_private  # noqa: PLC0415

    pin_file: Path = args.pin_file.resolve()
    if pin_file.exists():
        raise CommandError(f"{pin_file} already exists; refusing to replace a PIN")
    config = args.dir.resolve() / "softhsm2.conf"
    if not config.exists():
        config = softhsm.write_config(args.dir.resolve())
    pin = generated_password()
    try:
        softhsm.init_token(config, args.label, generated_password(), pin)
    except softhsm.SoftHsmError as error:
        raise CommandError(str(error)) from error
    write_private(pin_file, pin + "\n")
    print_json(
        {
            "token_label": args.label,
            "pin_file": str(pin_file),
            "module": str(softhsm.module_path()),
            softhsm.CONFIG_ENV: str(config),
        }
    )
    return 0


def rotated_broker_keys(path: Path) -> list[Path]:
    """``broker.key.1``, ``broker.key.2``, ...: the signing keys rotations added, in order."""
    from agents.daemons.broker_files import BrokerFiles  # noqa: PLC0415 - keep --help fast

    files = BrokerFiles(path.parent)
    found: list[Path] = []
    while files.signing_key(len(found) + 1).exists():
        found.append(files.signing_key(len(found) + 1))
    return found


def _show(path: Path, *, as_json: bool) -> int:
    from agents.runtime.keystore import describe_keys  # noqa: PLC0415 - keep --help fast

    described: dict[str, Any] = {"key_file": str(path), **describe_keys(path)}
    rotated = rotated_broker_keys(path) if path.name == KEY_FILES["broker"] else []
    if rotated:  # broker.key keeps the agreement key; the newest file signs
        described["sign_key_in_force"] = describe_keys(rotated[-1])["sign_key"]
        described["sign_key_file"] = str(rotated[-1])
        described["rotations"] = len(rotated)
    if as_json:
        print_json(described)
    else:
        width = max(len(name) for name in described)
        for name, value in described.items():
            print(f"{name:<{width}}  {value}")  # noqa: T201 - the command's output
    return 0


def register_keys(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``micropay keys`` and its sub-commands."""
    keys = commands.add_parser(
        "keys",
        help="create, show and rotate an agent's keys (a file, or a PKCS#11 token)",
        description=(
            "Every agent signs with an Ed25519 key and agrees on MAC keys with an X25519"
            " key. They live in the data directory's key file (development) or in a"
            " PKCS#11 token: a smart card, an HSM, SoftHSM2. The token's PIN comes from env"
            " MICROPAY_PKCS11_PIN or a 0600 file (MICROPAY_PKCS11_PIN_FILE, --pin-file),"
            " never from the command line."
        ),
    )
    sub = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    init = sub.add_parser(
        "init",
        help="create a data directory's keys (before `broker init`, `vendor run`, ...)",
        description=(
            "Create the keys of a broker, vendor or buyer data directory. With --backend"
            " pkcs11 the keys are generated inside the token, sensitive and not extractable;"
            " the key file then only names the module, token and label. Prints the public"
            " keys as JSON."
        ),
    )
    init.add_argument("--role", choices=sorted(KEY_FILES), required=True, help="whose keys")
    init.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help="its directory")
    init.add_argument(
        "--backend",
        choices=["file", "pkcs11"],
        default="file",
        help="file: seeds in a 0600 file; pkcs11: keys inside a token",
    )
    token = init.add_argument_group("PKCS#11 (with --backend pkcs11)")
    token.add_argument(
        "--pkcs11-module",
        metavar="PATH",
        help=(
            f"the token's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so (env {MODULE_ENV})"
        ),
    )
    token.add_argument("--token-label", metavar="LABEL", help=f"the token to use (env {TOKEN_ENV})")
    token.add_argument(
        "--key-label",
        metavar="LABEL",
        help="label of the keys in the token (default: the data directory's name)",
    )
    token.add_argument(
        "--pin-file",
        type=Path,
        metavar="FILE",
        help="a 0600 file holding the token's user PIN, recorded for the daemon",
    )
    token.add_argument(
        "--agreement",
        choices=["auto", "token", "sealed"],
        default="auto",
        help=(
            "X25519 in the token, or (sealed) in process with its key sealed under the"
            " token; auto tries the token first"
        ),
    )
    init.set_defaults(handler=cmd_keys_init)
    show = sub.add_parser(
        "show",
        help="where a data directory's keys live, and the public keys",
        description="Print the backend, the public keys and, for a token, its labels.",
    )
    show.add_argument("--data-dir", type=Path, required=True, metavar="DIR", help="its directory")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=cmd_keys_show)
    add_rotate_parser(sub)
    hsm = sub.add_parser(
        "softhsm-init",
        help="create a SoftHSM2 token to develop with (a software stand-in for a card)",
        description=(
            "Create a SoftHSM2 token under DIR (its softhsm2.conf is written there unless it"
            " exists) with a random user PIN, written to --pin-file (0600); the security"
            " officer PIN is random and not kept. Export SOFTHSM2_CONF=DIR/softhsm2.conf for"
            " every micropay command that uses the token. A real card or HSM is set up with"
            " its own tool instead."
        ),
    )
    hsm.add_argument("--dir", type=Path, required=True, metavar="DIR", help="SoftHSM2's directory")
    hsm.add_argument("--label", required=True, metavar="LABEL", help="the new token's label")
    hsm.add_argument(
        "--pin-file", type=Path, required=True, metavar="FILE", help="where to write the PIN"
    )
    hsm.set_defaults(handler=cmd_keys_softhsm_init)
