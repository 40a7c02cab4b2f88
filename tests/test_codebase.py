"""Rules of the codebase a newcomer relies on: short functions, every artefact named once."""

from __future__ import annotations

import ast
import re

import pytest

from helpers.config import REPO_ROOT

SRC = REPO_ROOT / "src" / "helpers"
SOURCES = sorted(SRC.rglob("*.py"))
# declarative tables, not logic: the feature registry lists every panel column
LONG_ALLOWED = {("panel/features.py", "feature_registry")}
MAX_FUNCTION_LINES = 100


def _functions(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_a_screenful_or_two():
    long = [
        f"{p.relative_to(SRC)}:{line} {name} ({n} lines)"
        for p in SOURCES
        for name, line, n in _functions(p)
        if n > MAX_FUNCTION_LINES and (str(p.relative_to(SRC)), name) not in LONG_ALLOWED
    ]
    assert not long, "split these into steps: " + "; ".join(long)


@pytest.mark.parametrize(
    "name",
    [
        "panel.parquet",
        "feature_catalogue.csv",
        "metrics.json",
        "scores.parquet",
        "_ingest_report.json",
        "true_probabilities.parquet",
        "_truth",
        "audit.log",
    ],
)
def test_every_artefact_is_named_in_one_source_file(name):
    pattern = re.compile(r"[\"']" + re.escape(name) + r"[\"']")
    holders = [
        str(p.relative_to(SRC)) for p in SOURCES if pattern.search(p.read_text(encoding="utf-8"))
    ]
    assert holders == ["paths.py"], f"{name!r} typed out in {holders}; ask helpers.paths instead"


def test_stage_code_has_no_settings_fallbacks():
    """Defaults live in helpers/config.py only: no `cfg.x.get("key", default)` in stage code."""
    pattern = re.compile(r"\bcfg(\.[a-z_]+)*\.get\(|\bcfg\[[^]]+\]\.get\(")
    hits = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SOURCES
        if p.name != "config.py"
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, hits
