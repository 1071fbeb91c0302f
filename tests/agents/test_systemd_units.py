"""The shipped systemd units load cleanly and keep a hardened sandbox.

``systemd-analyze verify`` and ``security --offline=yes`` run on each unit as installed in a
temporary root: the units in /etc/systemd/system, systemd's own units beside them, and the
ExecStart executable present, so that the check is the one a real install gets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONTRIB = Path(__file__).parents[2] / "contrib"
UNITS = sorted((CONTRIB / "systemd").iterdir())
EXECUTABLE = "opt/micropay/bin/micropay"
MAX_EXPOSURE = 2.5
INSTANCE = "kiosk"


def analyze(*arguments: str) -> subprocess.CompletedProcess[str]:
    analyzer = shutil.which("systemd-analyze")
    assert analyzer is not None, "systemd-analyze (Debian package systemd) is needed"
    return subprocess.run(  # noqa: S603 - a fixed tool and our own files
        [analyzer, *arguments], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root directory where the units are installed as the README says."""
    root = tmp_path_factory.mktemp("root")
    system_units = next(
        p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True)
    for unit in UNITS:
        (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    executable = root / EXECUTABLE
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return root


def instance(unit: Path) -> str:
    """The name to check a unit by: templates as one instance."""
    return unit.name.replace("@.", f"@{INSTANCE}.")


def test_the_units_shipped_are_the_ones_checked() -> None:
    names = {unit.name for unit in UNITS}
    assert names == {
        "micropay-broker.service",
        "micropay-vendor@.service",
        "micropay-buyer@.service",
        "micropay-buyer@.timer",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_a_unit_verifies_clean(root: Path, unit: Path) -> None:
    done = analyze("verify", f"--root={root}", instance(unit))
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""  # not even an unknown key


def test_verify_notices_a_missing_executable(tmp_path: Path, root: Path) -> None:
    """The clean verdict above means something: without the binary, verify fails."""
    bare = tmp_path / "bare"
    shutil.copytree(root, bare, symlinks=True)
    (bare / EXECUTABLE).unlink()
    done = analyze("verify", f"--root={bare}", "micropay-broker.service")
    assert done.returncode != 0
    assert "/opt/micropay/bin/micropay" in done.stderr


@pytest.mark.parametrize(
    "unit", [u for u in UNITS if u.suffix == ".service"], ids=lambda unit: unit.name
)
def test_a_service_is_sandboxed(root: Path, unit: Path) -> None:
    done = analyze("security", "--offline=yes", f"--root={root}", instance(unit))
    assert done.returncode == 0, done.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert found is not None, done.stdout
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout


@pytest.mark.parametrize("name", ["micropay-broker.service", "micropay-vendor@.service"])
def test_daemons_tell_systemd_they_are_ready_and_alive(name: str) -> None:
    settings = (CONTRIB / "systemd" / name).read_text().splitlines()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure"):
        assert line in settings


def test_agents_run_where_memory_cannot_be_written_and_executed() -> None:
    """MemoryDenyWriteExecute=yes, as the kernel's PR_SET_MDWE (Linux 6.3+) enforces it.

    The daemons' imports and their crypto, SQLite and encoding run under it; a mapping that is
    both writable and executable is refused, which shows the restriction was in force.
    """
    script = textwrap.dedent(
        """
        import ctypes, mmap, sqlite3
        PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) == 0, ctypes.get_errno()
        import agents.cli.main, agents.daemons.broker_daemon, agents.daemons.vendor_agent
        import agents.daemons.buyer_agent, aiosqlite, msgspec, paho.mqtt.client
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        key = Ed25519PrivateKey.generate()
        key.public_key().verify(key.sign(b"payword"), b"payword")
        sqlite3.connect(":memory:").execute("create table t (x)")
        assert msgspec.msgpack.decode(msgspec.msgpack.encode({"a": 1})) == {"a": 1}
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except PermissionError:
            print("refused")
        """
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, our own script
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=CONTRIB.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused"
