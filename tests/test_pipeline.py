"""The tiny city end to end: every notebook renders, nothing leaks, reruns are free and
results are reproducible."""

from __future__ import annotations

import json
import re

import pytest

from helpers.config import REPO_ROOT, load_config
from helpers.io import file_sha256
from helpers.runs.stage import ON_DEMAND_NOTEBOOKS

from .conftest import run_make

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted(
    p.stem for p in (REPO_ROOT / "notebooks").glob("*.py") if p.stem not in ON_DEMAND_NOTEBOOKS
)  # 07 and 10 are rendered on request


def expected_reports() -> list[str]:
    cfg = load_config(profile="tiny")
    out = []
    for name in cfg.reports.notebooks:
        if name == "03_model":
            out += [f"03_model_{t}.html" for t in cfg.run.targets]
        else:
            out.append(f"{name}.html")
    return out


def test_every_notebook_source_is_configured_to_render():
    configured = set(load_config(profile="tiny").reports.notebooks)
    assert set(NOTEBOOKS) == configured


def test_every_report_renders_without_code_or_errors(tiny_city):
    for name in expected_reports():
        path = tiny_city["reports"] / name
        assert path.exists(), f"{name} was not rendered"
        html = path.read_text(encoding="utf-8")
        assert "jp-InputArea" not in html and "input_area" not in html, f"{name} shows code"
        assert "Traceback" not in html and 'class="ansi-red' not in html, f"{name} shows an error"
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"https?://", html), (
            f"{name} loads from the network"
        )
        assert path.stat().st_size < 5 * 1024 * 1024, f"{name} is over 5 MB"


def test_index_lists_every_report(tiny_city):
    index = (tiny_city["reports"] / "index.html").read_text(encoding="utf-8")
    for name in expected_reports():
        assert name in index


def test_reports_pass_the_pii_scan(tiny_city):
    proc = run_make("check-reports", tiny_city["data"], tiny_city["reports"])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_second_make_all_does_no_work(tiny_city):
    index = str(tiny_city["reports"] / "index.html")
    proc = run_make(index, tiny_city["data"], tiny_city["reports"], "-q")
    # `make -q` exits 0 only when every file the chain makes is up to date
    assert proc.returncode == 0, "make all would redo work with nothing changed"


def test_audit_log_has_a_line_per_stage(tiny_city):
    text = (tiny_city["data"] / "audit.log").read_text(encoding="utf-8")
    for stage in ("synth", "ingest", "panel", "models", "review"):
        assert f'"stage": "{stage}' in text, stage


ARTEFACTS = (
    "mart/*.parquet",
    "panel/panel.parquet",
    "models/*/scores.parquet",
    "models/*/metrics.json",
    "review/*.parquet",
)


def artefact_hashes(data) -> dict[str, str]:
    out = {}
    for pattern in ARTEFACTS:
        for p in sorted(data.glob(pattern)):
            out[str(p.relative_to(data))] = file_sha256(p)
    return out


def test_same_inputs_and_seed_give_identical_results(tiny_city, tmp_path):
    data2 = tmp_path / "data"
    proc = run_make("review", data2, tmp_path / "reports")
    assert proc.returncode == 0, proc.stderr[-4000:]
    first, second = artefact_hashes(tiny_city["data"]), artefact_hashes(data2)
    assert any(k.startswith("models/") for k in first), "no model artefacts to compare"
    assert first.keys() == second.keys()
    differ = [k for k in first if first[k] != second[k]]
    assert not differ, f"not reproducible: {differ}"


GOLDEN = REPO_ROOT / "tests" / "golden" / "tiny.json"
GOLDEN_ARTEFACTS = ("mart/*.parquet", "panel/panel.parquet", "panel/feature_catalogue.csv")


def test_tiny_city_mart_and_panel_match_the_golden_set(tiny_city):
    """A refactor must not change outputs. If a change is meant to, regenerate the golden set:
    `make PROFILE=tiny DATA=/tmp/g panel` and write the hashes of GOLDEN_ARTEFACTS to
    tests/golden/tiny.json (say why in the commit)."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data = tiny_city["data"]
    now = {
        str(p.relative_to(data)): file_sha256(p)
        for pattern in GOLDEN_ARTEFACTS
        for p in sorted(data.glob(pattern))
    }
    assert now.keys() == golden.keys()
    changed = sorted(k for k in golden if golden[k] != now[k])
    assert not changed, f"outputs changed against tests/golden/tiny.json: {changed}"
