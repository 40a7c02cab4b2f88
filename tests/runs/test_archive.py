"""Every models run is archived under data/runs/<run_id>/ with a ledger row; retention."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.config import load_config
from helpers.paths import paths
from helpers.runs import ledger as L
from helpers.runs.archive import archive_run, new_run_id

from .conftest import population, scores_for, write_models_run

T0 = datetime(2024, 4, 1, 9, 30, tzinfo=UTC)


def archive(cfg, scores, minutes=0, target="young_carer", **kw):
    write_models_run(cfg, target, scores, **kw)
    return archive_run(cfg, target, now=T0 + timedelta(minutes=minutes))


def test_run_folder_holds_what_a_comparison_and_a_rerun_need(cfg):
    run_id = archive(cfg, scores_for(population(), 2.0, 1))
    assert re.fullmatch(r"20240401-093000-[0-9a-f]{8}", run_id)
    run = paths(cfg).run(run_id)
    for name in (
        "manifest",
        "config",
        "params",
        "metrics",
        "tuning",
        "scores",
        "feature_catalogue",
        "fairness",
    ):
        assert getattr(run, name).exists(), name
    assert not run.panel.exists()  # keep_panel is off by default
    config = json.loads(run.config.read_text(encoding="utf-8"))
    assert config["settings"]["models"]["tuning"]["n_trials"] == cfg.models.tuning.n_trials
    manifest = json.loads(run.manifest.read_text(encoding="utf-8"))
    assert manifest["run_id"] == run_id and manifest["target"] == "young_carer"
    assert len(manifest["panel_sha256"]) == 16
    pd.testing.assert_frame_equal(
        pd.read_parquet(run.scores), pd.read_parquet(paths(cfg).model("young_carer").scores)
    )


def test_ledger_has_every_run_with_headline_and_config_diff(cfg):
    pop = population()
    first = archive(cfg, scores_for(pop, 2.0, 1))
    cfg2 = cfg.with_overrides({"models": {"tuning": {"n_trials": 7}}})
    second = archive(cfg2, scores_for(pop, 2.0, 2), minutes=1, features=["f_a", "f_b", "f_new"])
    ledger = L.read_ledger(paths(cfg))
    assert ledger["run_id"].tolist() == [first, second]
    assert first.split("-")[-1] != second.split("-")[-1]  # the settings hash differs
    row = ledger.iloc[1]
    assert row["config_diff"] == "models.tuning.n_trials: 3 → 7"
    assert row["features_added"] == "f_new" and row["features_removed"] == "f_c"
    assert row["headline"].startswith("precision@30 = 0.200 [0.100, 0.300] (FY2023)")
    assert "backtest pooled 0.200" in row["headline"]
    assert row["target"] == "young_carer" and row["status"] == "archived"
    assert row["code_version"] and row["created"] == "2024-04-01T09:31:00+00:00"
    assert json.loads(row["test_years"]) == [2021, 2022, 2023]
    assert ledger.iloc[0]["config_diff"] == ""  # nothing to compare the first run with


def test_same_second_and_settings_get_distinct_ids(cfg):
    pop = population()
    a = archive(cfg, scores_for(pop, 2.0, 1))
    b = archive(cfg, scores_for(pop, 2.0, 1))
    assert b == f"{a}-2"
    assert (
        new_run_id(T0, "abcdef0123", {"20240401-093000-abcdef01"}) == "20240401-093000-abcdef01-2"
    )


def test_retention_deletes_old_folders_and_keeps_their_ledger_rows(cfg):
    cfg = cfg.with_overrides({"runs": {"keep_last": 2}})
    pop = population()
    ids = [archive(cfg, scores_for(pop, 2.0, i), minutes=i) for i in range(3)]
    other = archive(cfg, scores_for(pop, 2.0, 9), minutes=9, target="physical_abuse")
    ledger = L.read_ledger(paths(cfg))
    status = dict(zip(ledger["run_id"], ledger["status"], strict=True))
    assert status == {
        ids[0]: "pruned",
        ids[1]: "archived",
        ids[2]: "archived",
        other: "archived",
    }  # retention counts per target
    assert not paths(cfg).run(ids[0]).dir.exists()
    assert paths(cfg).run(ids[1]).dir.exists()


def test_archiving_can_be_switched_off(cfg):
    cfg = cfg.with_overrides({"runs": {"archive": False}})
    assert archive(cfg, scores_for(population(), 2.0, 1)) is None
    assert not paths(cfg).runs_ledger.exists()


def test_keep_panel_copies_the_panel(cfg):
    cfg = cfg.with_overrides({"runs": {"keep_panel": True}})
    run_id = archive(cfg, scores_for(population(), 2.0, 1))
    assert paths(cfg).run(run_id).panel.exists()


def test_missing_models_output_is_a_clear_error(cfg):
    with pytest.raises(
        MimamoriError,
        match=r"metrics.json: not found; cannot archive the "
        r"young_carer run",
    ):
        archive_run(cfg, "young_carer")


def test_keep_last_below_one_is_refused(cfg):
    cfg = cfg.with_overrides({"runs": {"keep_last": 0}})
    write_models_run(cfg, "young_carer", scores_for(population(), 2.0, 1))
    with pytest.raises(
        MimamoriError, match="config/runs.yaml: key 'keep_last': must be at least 1"
    ):
        archive_run(cfg, "young_carer")
    assert not paths(cfg).runs_ledger.exists()


def test_mlflow_enabled_without_the_package_fails_before_archiving(cfg, monkeypatch):
    from helpers.runs import tracking

    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    cfg = cfg.with_overrides({"runs": {"mlflow": {"enabled": True}}})
    write_models_run(cfg, "young_carer", scores_for(population(), 2.0, 1))
    with pytest.raises(
        MimamoriError, match="mlflow.enabled is true but the mlflow package is not installed"
    ):
        archive_run(cfg, "young_carer")
    assert not paths(cfg).runs_ledger.exists()


def test_mlflow_logs_the_run_to_a_local_sqlite_store(cfg):
    pytest.importorskip("mlflow", reason="mlflow is optional (README: Iterating on models)")
    from mlflow.tracking import MlflowClient

    from helpers.runs import tracking

    cfg = cfg.with_overrides({"runs": {"mlflow": {"enabled": True}}})
    run_id = archive(cfg, scores_for(population(), 2.0, 1))
    uri, artifacts = tracking.store_uri(cfg)
    assert uri.endswith(str(paths(cfg).data / "mlflow" / "mlflow.db"))
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("mimamori/young_carer")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["run_id"] == run_id
    assert run.data.metrics["precision_at_k"] == pytest.approx(0.2)
    assert run.data.params["models.tuning.n_trials"] == "3"
    assert (artifacts / "young_carer").exists()  # artefacts beside the store, not ./mlruns
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"scores.parquet"}


def test_runs_section_is_typed_and_checked(tmp_path):
    cfg = load_config()
    assert cfg.runs.keep_last == 20 and cfg.runs.archive and not cfg.runs.mlflow.enabled
    (tmp_path / "runs.yaml").write_text("keep_lats: 3\n", encoding="utf-8")
    with pytest.raises(MimamoriError, match="runs.yaml: key 'keep_lats': not a setting"):
        load_config(tmp_path)
