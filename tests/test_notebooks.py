"""Notebook sources: papermill must see every parameter (it silently ignores unparseable lines),
and the notebooks stay thin (logic lives in src/helpers)."""

from __future__ import annotations

import ast

import jupytext
import pytest
from papermill.translators import PythonTranslator

from helpers.config import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.py"))
SHARED = {"profile", "data_dir", "config_dir"}
# A notebook is a sequence of sentences of the analysis: logic lives in src/helpers.
MAX_CODE_LINES = 80


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_parsed_by_papermill(path):
    nb = jupytext.read(path)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one parameters cell"
    parsed = {p.name for p in PythonTranslator.inspect(cells[0])}
    assigned = {
        t.id
        for node in ast.parse(cells[0].source).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    assert parsed == assigned, f"papermill cannot parse: {assigned - parsed}"
    assert parsed >= SHARED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_stay_thin(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defs = [
        n
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.For, ast.While))
    ]
    assert not defs, f"loops/defs belong in src/helpers: line {defs[0].lineno}"


def _code_lines(path) -> int:
    nb = jupytext.read(path)
    lines = [ln for c in nb.cells if c.cell_type == "code" for ln in c.source.splitlines()]
    return sum(1 for ln in lines if ln.strip() and not ln.strip().startswith("#"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_have_few_code_lines(path):
    n = _code_lines(path)
    assert n <= MAX_CODE_LINES, (
        f"{path.name}: {n} code lines (cap {MAX_CODE_LINES}); move logic to helpers"
    )
