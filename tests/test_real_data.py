"""Real-data mode end to end: the tiny city's exports without the generator's truth,
``synthetic: false`` (a settings folder passed as make's CONFIG=), a pseudonym key from the
environment, and ``make all`` to a clean check-reports; the same in the second vendor's
dialect, whose mart and panel must equal the first's."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.config import REPO_ROOT, load_config
from helpers.paths import Paths
from helpers.schema import load_schemas
from helpers.synth.stage import generate_city

pytestmark = pytest.mark.slow

KEY = "5b2e9f0c7d4a1e8b3c6f9a2d5e8b1c4f-ci-real-data"  # a test key: 45 bytes, not the demo key
PLANTED_UNKNOWN = "不明区分77"


def make(target: str, city: dict, *extra: str, key: str = KEY) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMAMORI_")}
    env.update({"MPLBACKEND": "Agg", "MIMAMORI_KEY": key})
    return subprocess.run(
        [
            "make",
            target,
            "PROFILE=tiny",
            f"CONFIG={city['config']}",
            f"DATA={city['data']}",
            f"REPORTS={city['reports']}",
            *extra,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )


def helpers_cli(city: dict, *args: str, key: str = KEY) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMAMORI_")}
    env.update(
        {
            "MIMAMORI_KEY": key,
            "MIMAMORI_CONFIG": str(city["config"]),
            "MIMAMORI_PROFILE": "tiny",
            "MIMAMORI_DATA": str(city["data"]),
            "MIMAMORI_REPORTS": str(city["reports"]),
            "MPLBACKEND": "Agg",
        }
    )
    return subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "python"), "-m", "helpers", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def real_settings(folder: Path, models: dict | None = None) -> Path:
    """A copy of config/ with ``synthetic: false`` (and cheaper models if asked)."""
    shutil.copytree(REPO_ROOT / "config", folder)
    run = folder / "run.yaml"
    run.write_text(
        run.read_text(encoding="utf-8").replace("synthetic: true", "synthetic: false"),
        encoding="utf-8",
    )
    assert load_config(folder).run.synthetic is False
    if models:
        profile = folder / "profiles" / "tiny.yaml"
        body = yaml.safe_load(profile.read_text(encoding="utf-8"))
        body.setdefault("models", {}).update(models)
        profile.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return folder


def build(root: Path, dialect: str, models: dict | None = None) -> dict:
    """Write the tiny city's exports in a dialect, keep the truth aside, run make all."""
    data, reports = root / "data", root / "reports"
    cfg = load_config(
        profile="tiny", overrides={"run": {"data_dir": str(data)}, "synth": {"dialect": dialect}}
    )
    P = Paths(data, reports)
    generate_city(cfg, P.raw)
    truth = root / "truth"
    shutil.move(str(P.truth), truth)  # real exports have no truth
    city = {
        "root": root,
        "data": data,
        "reports": reports,
        "P": P,
        "truth": truth,
        "config": real_settings(root / "config", models),
    }
    proc = make("all", city)
    city["log"] = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail(
            f"make all in real-data mode ({dialect}) failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return city


@pytest.fixture(scope="module")
def real_city(tmp_path_factory) -> dict:
    return build(tmp_path_factory.mktemp("real_default"), "default")


@pytest.fixture(scope="module")
def real_city_b(tmp_path_factory, real_city) -> dict:
    # the second vendor's city: same seed and key; the models need not be tuned again to show
    # that mart and panel are the same, so they run on the smallest budget
    cheap = {"tuning": {"n_trials": 1}, "bootstrap": {"n": 20}, "tie_orderings": 2}
    return build(tmp_path_factory.mktemp("real_vendor_b"), "vendor_b", cheap)


def expected_reports(city: dict) -> list[str]:
    cfg = load_config(city["config"], profile="tiny")
    out = []
    for name in cfg.reports.notebooks:
        out += (
            [f"03_model_{t}.html" for t in cfg.run.targets]
            if name == "03_model"
            else [f"{name}.html"]
        )
    return out


# ----------------------------------------------------------------------------- default dialect
def test_make_all_in_real_data_mode_renders_every_report(real_city):
    P = real_city["P"]
    assert not P.truth.exists()
    for name in expected_reports(real_city):
        html = (real_city["reports"] / name).read_text(encoding="utf-8")
        assert "Traceback" not in html and 'class="ansi-red' not in html, name
    report = json.loads(P.ingest_report.read_text(encoding="utf-8"))
    assert report["synthetic"] is False and report["key_source"] == "env"
    overview = (real_city["reports"] / "00_city_overview.html").read_text(encoding="utf-8")
    assert "実データ" in overview and "目標の出典" in overview  # heading kept, section empty
    assert "check-reports: FAILED" not in real_city["log"]


def test_a_second_make_all_does_no_work_and_a_changed_export_redoes_ingest(real_city):
    index = str(real_city["P"].index_html)  # `make -q` exits 0 only when all is up to date
    assert make(index, real_city, "-q").returncode == 0
    export = next(real_city["P"].raw.glob("出欠状況*.csv"))
    data = export.read_bytes()
    st = export.stat()
    os.utime(export, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched only: no work
    assert make(index, real_city, "-q").returncode == 0
    try:  # the same size, other content, back-dated: make must see it
        export.write_bytes(data.replace(b",2023,", b",2022,", 1))
        os.utime(export, (1_000_000_000, 1_000_000_000))
        assert make(str(real_city["P"].ingest_report), real_city, "-q").returncode == 1
    finally:
        export.write_bytes(data)
        os.utime(export, ns=(st.st_atime_ns, st.st_mtime_ns))
        make("mart", real_city)


def test_the_demo_key_is_refused_for_real_data(real_city):
    from helpers.ingest.masking import DEMO_KEY

    proc = helpers_cli(real_city, "ingest", "--force", key=DEMO_KEY.decode())
    assert proc.returncode == 2 and "public demo key" in proc.stderr


def test_correspondence_to_reidentified_list_on_real_data(real_city):
    P = real_city["P"]
    proc = helpers_cli(real_city, "ingest", "--write-correspondence", "--force")
    assert proc.returncode == 0, proc.stderr
    proc = helpers_cli(real_city, "review", "reidentify")
    assert proc.returncode == 0, proc.stderr
    listed = pd.read_csv(next(P.private.glob("review_sample_reidentified.csv")), dtype=str)
    assert listed["resident_code"].str.fullmatch(r"\d{8,15}").all()
    assert stat.S_IMODE(P.private.stat().st_mode) == 0o700
    for f in P.private.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name


# ----------------------------------------------------------------------------- second dialect
def test_second_vendor_make_all_in_real_data_mode(real_city_b):
    for name in expected_reports(real_city_b):
        assert (real_city_b["reports"] / name).exists(), name


def test_second_vendor_gives_the_same_mart_and_panel(real_city, real_city_b):
    a, b = real_city["P"], real_city_b["P"]
    for table in load_schemas():
        pd.testing.assert_frame_equal(
            pd.read_parquet(a.mart_table(table)), pd.read_parquet(b.mart_table(table)), obj=table
        )
    pd.testing.assert_frame_equal(pd.read_parquet(a.panel), pd.read_parquet(b.panel))


def test_second_vendor_loses_no_row_to_its_spellings(real_city_b):
    P = real_city_b["P"]
    report = json.loads(P.ingest_report.read_text(encoding="utf-8"))
    defects = pd.read_csv(real_city_b["truth"] / P.truth_defects.name)
    for table, t in report["tables"].items():
        planted = defects[(defects["table"] == table) & (defects["action"] == "reject_row")]
        assert t["rows_rejected"] <= planted[["file", "source_row"]].drop_duplicates().shape[0]
        assert {u["value"] for u in t["unmapped_values"]} <= {PLANTED_UNKNOWN}, table
