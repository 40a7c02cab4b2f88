"""Acceptance on the tiny city: every models run archived, two runs with different n_trials
compared by `make compare` with a paired CI, a run against itself differs by exactly 0, and the
model notebook runs top to bottom as JupyterLab would run it (no papermill) on the built data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import jupytext
import pytest
import yaml

from helpers.config import REPO_ROOT, load_config
from helpers.paths import paths
from helpers.runs import ledger as L

from ..conftest import run_make

pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMAMORI_")}
    return {**env, "MPLBACKEND": "Agg", **extra}


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """The tiny city built up to the models (`make PROFILE=tiny models`) in its own folder."""
    root = tmp_path_factory.mktemp("runs_city")
    data, reports = root / "data", root / "reports"
    proc = run_make("models", data, reports)
    if proc.returncode != 0:
        pytest.fail(f"make models on the tiny city failed:\n{proc.stderr[-4000:]}")
    return {"data": data, "reports": reports, "root": root}


def ledger_of(data):
    cfg = load_config(profile="tiny", overrides={"run": {"data_dir": str(data)}})
    return L.read_ledger(paths(cfg))


def test_make_models_archived_a_run_per_target(city):
    ledger = ledger_of(city["data"])
    assert sorted(ledger["target"]) == sorted(load_config(profile="tiny").run.targets)
    for run_id in ledger["run_id"]:
        assert (city["data"] / "runs" / run_id / "scores.parquet").exists()


def test_two_runs_with_different_n_trials_compared_with_a_paired_ci(city):
    config = city["root"] / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    tiny = config / "profiles" / "tiny.yaml"
    body = yaml.safe_load(tiny.read_text(encoding="utf-8"))
    before = body["models"]["tuning"]["n_trials"]
    body["models"]["tuning"]["n_trials"] = before + 3
    tiny.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "--config-dir",
            str(config),
            "--profile",
            "tiny",
            "--data-dir",
            str(city["data"]),
            "models",
            "--target",
            "young_carer",
        ],
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = ledger_of(city["data"]).query("target == 'young_carer'")
    assert len(runs) == 2
    assert f"models.tuning.n_trials: {before} → {before + 3}" in runs["config_diff"].iloc[-1]

    proc = run_make("compare", city["data"], city["reports"], "TARGET=young_carer")
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (city["reports"] / "07_run_comparison.html").read_text(encoding="utf-8")
    assert "paired bootstrap" in html and "95% CI" in html
    assert "models.tuning.n_trials" in html
    assert re.search(r"改善（better）|差は検出されず|悪化（worse）", html)
    assert "Traceback" not in html


def test_a_run_against_itself_differs_by_exactly_zero(city):
    proc = run_make(
        "compare", city["data"], city["reports"], "BASE=latest", "NEW=latest", "TARGET=young_carer"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "difference in hits@30 +0.00 [+0.00, +0.00] -> no detectable difference" in proc.stdout
    html = (city["reports"] / "07_run_comparison.html").read_text(encoding="utf-8")
    assert "差 0（2つの実行は全ての児童年を同じ順に並べる identical rankings）" in html
    assert "差は検出されず（no detectable difference）" in html


def test_the_comparison_report_passes_the_disclosure_scan(city):
    if not (city["reports"] / "07_run_comparison.html").exists():
        assert run_make("compare", city["data"], city["reports"]).returncode == 0
    proc = run_make("check-reports", city["data"], city["reports"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_bad_input_is_one_line(city):
    proc = run_make("compare", city["data"], city["reports"], "BASE=nosuch")
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("mimamori runs: error:")]
    assert len(lines) == 1 and "unknown run id 'nosuch'" in lines[0]
    assert "Traceback" not in proc.stderr


def test_model_notebook_runs_top_to_bottom_without_papermill(city, tmp_path):
    """What JupyterLab does with "Run All" (`make lab` exports the profile and data folder)."""
    from nbclient import NotebookClient

    nb = jupytext.read(REPO_ROOT / "notebooks" / "03_model.py")
    env = _env(
        MIMAMORI_PROFILE="tiny",
        MIMAMORI_DATA=str(city["data"]),
        MIMAMORI_REPORTS=str(tmp_path),
        MPLBACKEND="module://matplotlib_inline.backend_inline",
    )
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        NotebookClient(
            nb,
            kernel_name="mimamori",
            timeout=600,
            resources={"metadata": {"path": str(REPO_ROOT)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors, errors[0]
    html = "".join(
        o.get("data", {}).get("text/html", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    assert "profile=tiny" in html and str(city["data"]) in html
