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
# A notebook is a sequence of sentences of the analysis: logic lives in src/helpers. Counted in
# statements, so the cap does not depend on how the formatter wraps a long call.
MAX_STATEMENTS = 55


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


def _statements(path) -> int:
    nb = jupytext.read(path)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return sum(isinstance(node, ast.stmt) for node in ast.walk(ast.parse(source)))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_have_few_statements(path):
    n = _statements(path)
    assert n <= MAX_STATEMENTS, (
        f"{path.name}: {n} statements (cap {MAX_STATEMENTS}); move logic to helpers"
    )
