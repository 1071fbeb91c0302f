"""docs/SECURITY.md and the attack suite stay in step: every row names a test that exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| (\d+) \|(.*)\|$")
TEST = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def table_rows() -> list[tuple[int, str]]:
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    return [(int(m[1]), m[2]) for line in text.splitlines() if (m := ROW.match(line))]


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def test_every_threat_row_names_a_test_that_exists() -> None:
    rows = table_rows()
    assert len(rows) >= 30
    assert [number for number, _ in rows] == list(range(1, len(rows) + 1))
    for number, row in rows:
        named = TEST.findall(row)
        assert named, f"row {number} names no test"
        for file, function in named:
            path = ROOT / file
            assert path.is_file(), f"row {number}: {file} does not exist"
            functions = functions_in(path)
            if function:
                assert function in functions, f"row {number}: no {function} in {file}"
            else:
                assert functions, f"row {number}: {file} holds no tests"
