"""SECURITY.md names a test for every control (issue 20, item 5), and each test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.security
ROOT = Path(__file__).resolve().parent.parent
CITED = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
OTHER_PARTS = "### Rows from the other parts of issue 20"


def table_rows(text: str) -> list[str]:
    """Rows of the threat tables: every markdown table row but headers and rules."""
    rows = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [row for row in rows if not row.startswith("| threat")]


def undefined(text: str) -> tuple[list[str], list[str]]:
    """(cited tests missing from their file, cited files that do not exist)."""
    missing, absent = [], []
    for path, name in CITED.findall(text):
        if not (ROOT / path).exists():
            absent.append(path)
            continue
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        if name not in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}:
            missing.append(f"{path}::{name}")
    return missing, sorted(set(absent))


def sections() -> tuple[str, str]:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    own, _, others = text.partition(OTHER_PARTS)
    return own, others


def test_every_control_names_a_test_and_every_named_test_exists() -> None:
    own, _ = sections()
    rows = table_rows(own)
    assert len(rows) >= 40
    assert [row for row in rows if not CITED.search(row)] == []
    assert undefined(own) == ([], [])


def test_the_rows_of_the_other_parts_name_tests_that_exist() -> None:
    """Rows written by the other parts of issue 20 (faults, fuzzing, web): checked the same way once
    their branches are merged; before that, their files are named and the check is skipped."""
    _, others = sections()
    rows = table_rows(others)
    assert [row for row in rows if not CITED.search(row)] == []
    missing, absent = undefined(others)
    assert missing == []
    if absent:
        pytest.skip(f"test files of other branches not merged here yet: {', '.join(absent)}")
