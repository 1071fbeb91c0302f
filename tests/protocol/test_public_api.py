"""The import surface a device or another program uses: ``from protocol import ...``.

The installed wheel is what such a program gets, so one test builds it, installs it into
an empty virtual environment and imports from there (and type-checks against it: the
``py.typed`` markers are what make mypy read the packages). The README's example is run
here too, so the documented surface cannot drift from the real one.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType, UnionType

import pytest

import protocol
from protocol import broker_events, errors, events

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("protocol", "agents", "broker_ledger")
# What the sans-I/O core must never pull in: the shells, the ledger, any I/O framework.
NOT_IN_THE_CORE = ("agents", "broker_ledger", "asyncio", "aiomqtt", "aiosqlite", "sqlite3")


def _uv() -> str:
    """The uv that runs this suite (``uv run`` exports it), else the one ``make`` installs."""
    found = os.environ.get("UV") or shutil.which("uv")
    if found:
        return found
    local = REPO / ".venv-tools" / "bin" / "uv"
    assert local.is_file(), "uv not found: run `make setup`"
    return str(local)


def _run(
    command: list[str], cwd: Path, env: dict[str, str] | None = None, returncode: int = 0
) -> str:
    """Run one of our own tools and return what it printed, failing with all it said."""
    done = subprocess.run(  # noqa: S603 - our interpreter, uv or mypy, with test paths
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == returncode, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_every_name_in_all_resolves_once() -> None:
    assert len(protocol.__all__) == len(set(protocol.__all__))
    missing = [name for name in protocol.__all__ if not hasattr(protocol, name)]
    assert not missing
    for core in ("BuyerCore", "VendorCore", "BrokerCore", "Core", "MemoryNetwork"):
        assert core in protocol.__all__


@pytest.mark.parametrize("module", [events, errors, broker_events], ids=lambda m: m.__name__)
def test_everything_public_in_events_and_errors_is_exported(module: ModuleType) -> None:
    """A new event or error is part of the surface as soon as it exists."""
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (
            (isinstance(value, type) and value.__module__ == module.__name__)
            or isinstance(value, UnionType)
        )
    }
    assert public
    assert sorted(public - set(protocol.__all__)) == []


@pytest.mark.parametrize(
    "name", sorted(info.name for info in pkgutil.iter_modules(protocol.__path__))
)
def test_each_submodule_imports_first_in_a_fresh_interpreter(name: str) -> None:
    """No import cycle through ``protocol/__init__.py``, whichever module comes first."""
    script = (
        f"import sys, protocol.{name}\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({NOT_IN_THE_CORE!r})))"
    )
    assert _run([sys.executable, "-c", script], REPO).strip() == "[]"


def readme_python_blocks() -> list[str]:
    """Every fenced ``python`` block of the README, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_readme_example_runs_on_the_public_names_only(capsys: pytest.CaptureFixture[str]) -> None:
    blocks = readme_python_blocks()
    assert blocks
    for number, block in enumerate(blocks):
        tree = ast.parse(block, filename=f"README.md python block {number}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module == "protocol", ast.unparse(node)
            elif isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
                assert roots <= sys.stdlib_module_names, ast.unparse(node)
        namespace: dict[str, object] = {"__name__": "readme"}
        exec(compile(tree, f"README.md python block {number}", "exec"), namespace)  # noqa: S102 - the README's own example
    out = capsys.readouterr().out
    assert "alice paid 450, kiosk was credited 450" in out


INSTALLED_CHECK = """
import sys
from pathlib import Path

import protocol
from protocol import BrokerCore, BuyerCore, Identity, MemoryNetwork, VendorCore

assert Path(protocol.__file__).is_relative_to(Path(sys.prefix)), protocol.__file__
missing = [name for name in protocol.__all__ if not hasattr(protocol, name)]
assert not missing, missing
broker = BrokerCore("broker", Identity.generate())
assert BuyerCore("alice", Identity.generate(), broker.info).account == "alice"
assert VendorCore.__name__ == "VendorCore"
MemoryNetwork().attach(broker, 0.0)
print(" ".join(sorted(protocol.__all__)))
"""

TYPED_CLIENT = """
from protocol import BuyerCore, ChannelOpened, Identity, VendorTerms

def open_one(buyer: BuyerCore, now: float) -> ChannelOpened:
    return buyer.open_channel("kiosk", 10, now)

terms: VendorTerms = VendorTerms(unit_value=1)
wrong: int = Identity.generate()
"""


def test_the_wheel_installs_and_serves_the_public_api(tmp_path: Path) -> None:
    """Build, install into an empty venv, import and type-check from outside the tree."""
    uv = _uv()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_RUN_RECURSION_DEPTH"}
    }
    dist = tmp_path / "dist"
    _run([uv, "build", "--wheel", "--out-dir", str(dist), str(REPO)], REPO, env)
    (wheel,) = dist.glob("micropay-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"{package}/py.typed" for package in PACKAGES} <= names
    shipped = {"mosquitto.conf", "mosquitto.acl", "micropay_retain_guard.c"}
    assert {f"agents/ops/shipped/{name}" for name in shipped} <= names
    assert "protocol/__init__.py" in names
    assert not any(name.startswith(("tests/", "bench/", "fuzz/")) for name in names)

    venv = tmp_path / "venv"
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    # The locked versions of the dependencies: the ones `uv sync` already put in uv's cache.
    locked = tmp_path / "locked.txt"
    export = ["export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes"]
    _run([uv, *export, "--quiet", "--output-file", str(locked)], REPO, env)
    install = ["pip", "install", "--quiet", "--python", str(python), "--constraint", str(locked)]
    _run([uv, *install, str(wheel)], tmp_path, env)

    # -I: isolated, so neither the working directory nor PYTHON* variables reach the tree.
    exported = _run([str(python), "-I", "-c", INSTALLED_CHECK], tmp_path, env).split()
    assert exported == sorted(protocol.__all__)
    _run([str(venv / "bin" / "micropay"), "--help"], tmp_path, env)
    # Away from the source tree, `mqtt render` finds the shipped templates and builds the
    # retain guard into the user's cache.
    rendered = tmp_path / "mq"
    cache_env = {**env, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    micropay = str(venv / "bin" / "micropay")
    _run([micropay, "mqtt", "render", str(rendered), "--port", "18999"], tmp_path, cache_env)
    config = (rendered / "mosquitto.conf").read_text()
    assert "listener 18999 127.0.0.1" in config
    assert f"plugin {rendered / 'micropay_retain_guard.so'}" in config
    assert (tmp_path / "cache" / "micropay" / "mosquitto" / "micropay_retain_guard.so").is_file()

    # mypy reads an installed package only with its py.typed: then the one planted error
    # is found, and nothing is reported about missing stubs.
    client = tmp_path / "client.py"
    client.write_text(TYPED_CLIENT, encoding="utf-8")
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
    report = _run(
        [
            *mypy,
            "--python-executable",
            str(python),
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(client),
        ],
        tmp_path,
        env,
        returncode=1,
    )
    assert "py.typed" not in report
    assert "import-untyped" not in report
    assert re.findall(r"error: .*\[(\S+)\]", report) == ["assignment"], report
    assert 'Incompatible types in assignment (expression has type "Identity"' in report
