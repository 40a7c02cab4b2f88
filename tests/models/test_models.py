"""helpers.models.stage on a toy panel with a planted non-linear signal and rare labels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.config import load_config
from helpers.models import baselines as bl
from helpers.models import data as d
from helpers.models import families as fam
from helpers.models import stage as m
from helpers.models import tuning as tu
from helpers.models.population import population_for

YC_ITEMS = [
    "yc_independence_support_ever",
    "yc_member_75plus",
    "yc_care_need",
    "yc_handbook",
    "yc_foreign_national",
    "yc_two_under5",
    "yc_public_assistance",
    "yc_single_parent_allowance",
    "yc_school_aid",
    "yc_not_in_nursery",
    "yc_member_independence_support",
    "yc_sibling_special_class",
]


def make_toy_panel(
    n_children: int = 1500,
    years=(2017, 2018, 2019, 2020, 2021),
    seed: int = 0,
    base_logit: float = -4.5,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(panel, catalogue, truth) following docs/architecture.md "data/panel".

    Planted signal (log-odds): public assistance +1.5, care need +1.0, an interaction
    (absence_days > 10 and age >= 10) +2.0, a missing 3-year checkup +0.7; rare labels.
    """
    rng = np.random.default_rng(seed)
    ids = np.array([f"{i:016x}" for i in rng.permutation(10**6)[:n_children]])
    age0 = rng.integers(0, 12, n_children)
    frames = []
    for j, fy in enumerate(years):
        n = n_children
        df = pd.DataFrame(
            {"child_id": ids, "fiscal_year": fy, "age": age0 + j, "school_age": age0 + j}
        )
        df["grade"] = np.where(df["age"].between(6, 14), df["age"] - 5, np.nan)
        prev = np.array([0.05, 0.08, 0.04, 0.06, 0.05, 0.1, 0.07, 0.15, 0.12, 0.2, 0.04, 0.03])
        items = (rng.random((n, 12)) < prev).astype(float)
        items[rng.random((n, 12)) < 0.02] = np.nan
        for c, col in enumerate(YC_ITEMS):
            df[col] = items[:, c]
        df["yc_rule_score"] = np.nansum(items, axis=1)
        df["absence_days"] = rng.poisson(4, n).astype(float)
        df.loc[df["age"] < 6, "absence_days"] = np.nan
        df["weight_3y"] = rng.normal(15, 2, n)
        df.loc[rng.random(n) < 0.15, "weight_3y"] = np.nan
        df["consultations_3y"] = rng.poisson(0.3, n).astype(float)
        df["noise_a"] = rng.normal(size=n)
        df["noise_b"] = (rng.random(n) < 0.3).astype(float)
        df["sex"] = rng.choice(["1", "2"], n)
        df["nationality"] = rng.choice(["JP", "JP", "JP", "JP", "other"], n)
        df["single_parent"] = (rng.random(n) < 0.15).astype(int)
        df["school_code"] = rng.choice(["S01", "S02", "S03"], n)
        df["school_district"] = df["school_code"].map({"S01": "北", "S02": "北", "S03": "南"})
        inter = ((df["absence_days"] > 6) & (df["age"] >= 10)).astype(float)
        logit = (
            base_logit
            + 1.5 * np.nan_to_num(items[:, 6])
            + 1.0 * np.nan_to_num(items[:, 2])
            + 2.0 * inter
            + 0.7 * df["weight_3y"].isna()
            + 0.5 * df["consultations_3y"]
        )
        p = 1 / (1 + np.exp(-logit))
        df["_p"] = p
        df["label_physical_abuse"] = (rng.random(n) < p).astype(float)
        df["known_physical_abuse"] = (rng.random(n) < 0.01).astype(int)
        p_yc = 1 / (1 + np.exp(-(-4 + 0.8 * df["yc_rule_score"])))
        df["_p_yc"] = p_yc
        df["label_young_carer"] = (rng.random(n) < p_yc).astype(float)
        df["known_young_carer"] = 0
        frames.append(df)
    panel = pd.concat(frames, ignore_index=True)
    truth = pd.concat(
        [
            panel[["child_id", "fiscal_year", "_p"]]
            .rename(columns={"_p": "p"})
            .assign(target="physical_abuse"),
            panel[["child_id", "fiscal_year", "_p_yc"]]
            .rename(columns={"_p_yc": "p"})
            .assign(target="young_carer"),
        ],
        ignore_index=True,
    )
    panel = panel.drop(columns=["_p", "_p_yc"])
    feats = YC_ITEMS + [
        "yc_rule_score",
        "absence_days",
        "weight_3y",
        "consultations_3y",
        "noise_a",
        "noise_b",
    ]
    types = {c: "binary" for c in YC_ITEMS + ["noise_b"]}
    types.update({"yc_rule_score": "count", "consultations_3y": "count", "absence_days": "count"})
    rows = [
        {
            "name": f,
            "label_ja": f"項目_{f}",
            "description": f,
            "source_tables": "toy",
            "window": "1",
            "type": types.get(f, "numeric"),
            "role": "feature",
            "missing_treatment": "keep",
        }
        for f in feats
    ]
    rows += [
        {
            "name": c,
            "label_ja": c,
            "description": c,
            "source_tables": "toy",
            "window": "",
            "type": "numeric",
            "role": "info",
            "missing_treatment": "keep",
        }
        for c in ["age", "sex", "nationality", "single_parent", "school_code", "school_district"]
    ]
    return panel, pd.DataFrame(rows), truth


def toy_cfg(tmp_path, **models_over) -> dict:
    over = {
        "run": {"data_dir": str(tmp_path), "capacity": 30, "seed": 7},
        "models": {
            "tuning": {"n_trials": 2, "time_budget_s": 1000, "n_folds": 2},
            "bootstrap": {"n": 30},
            "tie_orderings": 5,
            "reference_tree": {"min_samples_leaf": 20, "min_samples_split": 60},
            "lightgbm_defaults": {
                "n_estimators": 30,
                "learning_rate": 0.1,
                "num_leaves": 7,
                "min_child_samples": 20,
                "reg_lambda": 1.0,
                "colsample_bytree": 1.0,
                "subsample": 1.0,
                "weighting": "sqrt",
            },
            "lightgbm_space": {
                "n_estimators": [30],
                "learning_rate": [0.1],
                "num_leaves": [7, 15],
                "min_child_samples": [20],
                "reg_lambda": [1.0],
                "colsample_bytree": [0.8],
                "subsample": [0.7, 1.0],
                "weighting": ["balanced", "none"],
            },
        },
    }
    over["models"].update(models_over)
    return load_config(profile="", overrides=over)


@pytest.fixture(scope="module")
def toy():
    return make_toy_panel()


@pytest.fixture(scope="module")
def fitted(toy, tmp_path_factory):
    panel, cat, truth = toy
    out = tmp_path_factory.mktemp("models") / "physical_abuse"
    cfg = toy_cfg(out.parent)
    metrics = m.fit_target(panel, cat, cfg, "physical_abuse", out, truth_probs=truth)
    return metrics, out, cfg


def test_fit_target_writes_artifacts_and_metrics(fitted):
    metrics, out, _ = fitted
    for name in [
        "metrics.json",
        "params.json",
        "scores.parquet",
        "tuning.parquet",
        "segment_table.csv",
        "reference_tree_nodes.csv",
        "model_lightgbm.txt",
        "model_logistic.joblib",
        "shap_values.parquet",
        "fairness.csv",
        "crosstab_topk.csv",
        "single_variable.csv",
        "backtest.csv",
        "calibration.csv",
        "year_to_year.csv",
        "fold_to_fold.csv",
    ]:
        assert (out / name).exists(), name
    on_disk = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert on_disk["test_year"] == 2021 and on_disk["train_years"] == [2017, 2018, 2019, 2020]
    h = metrics["headline"]
    for name in ("model", "best_single_variable", "yc_rule_score", "reference_tree", "oracle"):
        ci = h[name]["precision_at_k"]
        assert ci["ci_low"] <= ci["value"] <= ci["ci_high"], name
    # the planted signal is learnable: the model beats the noise floor
    assert h["model"]["roc_auc"]["value"] > 0.6
    assert 0 < metrics["oracle"]["model_share_of_oracle"] < 2


def test_metrics_contract_population_backtest_calibration(fitted):
    """The fields other stages and checks read (issue 13's contract)."""
    m, _, _ = fitted
    pop = m["population"]
    assert {"description", "min_age", "max_age", "n_evaluated"} <= set(pop)
    assert (pop["min_age"], pop["max_age"]) == (6, 14) and pop["description"]
    bt = m["backtest"]
    assert bt["test_years"] == [2019, 2020, 2021]
    pooled = bt["pooled"]
    for key in ("precision_at_k", "expected_precision_at_k", "oracle_expected_share"):
        d = pooled[key]
        assert d["ci_low"] <= d["value"] <= d["ci_high"], key
    assert 0 < pooled["oracle_expected_share"]["value"] <= 1.0
    assert len(bt["per_year"]) == 3
    for row in bt["per_year"]:
        assert {
            "test_year",
            "events",
            "precision_at_k",
            "expected_precision_at_k",
            "validation_precision_at_k",
        } <= set(row)
    assert sum(r["n_evaluated"] for r in bt["per_year"]) == pop["n_evaluated"]
    assert set(bt["comparisons"]) == {
        "model_vs_best_single_variable",
        "model_vs_yc_rule_score",
        "model_vs_reference_tree",
    }
    for d in bt["comparisons"].values():
        assert d["ci_low"] <= d["value"] <= d["ci_high"]
    cal = m["calibration"]
    assert {"test_observed", "test_expected", "oe", "oe_ci_low", "oe_ci_high", "ok"} <= set(cal)
    assert cal["oe_ci_low"] <= cal["oe"] <= cal["oe_ci_high"]
    assert isinstance(cal["ok"], bool)
    assert cal["test_observed"] == sum(r["events"] for r in bt["per_year"])
    assert cal["recalibrated_on"] == 2020  # the most recent validation year of the final model


def test_scores_hold_only_eligible_child_years_of_every_backtest_year(toy, fitted):
    panel, _, _ = toy
    metrics, out, cfg = fitted
    scores = pd.read_parquet(out / "scores.parquet")
    assert sorted(scores["fiscal_year"].unique()) == [2019, 2020, 2021]
    assert not scores.duplicated(["child_id", "fiscal_year"]).any()
    merged = scores[["child_id", "fiscal_year"]].merge(panel, on=["child_id", "fiscal_year"])
    population_for(cfg.models, "physical_abuse").check(merged, "scores.parquet")
    eligible = population_for(cfg.models, "physical_abuse").mask(panel)
    per_year = panel[eligible].groupby("fiscal_year").size()
    assert scores.groupby("fiscal_year").size().to_dict() == per_year.loc[2019:].to_dict()
    for _, part in scores.groupby("fiscal_year"):
        assert sorted(part["rank"].astype(int)) == list(range(1, len(part) + 1))
    listed = scores[scores["fiscal_year"] == 2021].nsmallest(30, "rank")
    assert listed["reason_1"].notna().all() and listed["reason_1"].str.startswith("項目_").all()
    if metrics["risk_ratio_withheld"]:
        assert scores["risk_ratio"].isna().all()
    else:
        rr = scores["probability"] / scores["risk_ratio"]
        assert rr.notna().all()


def test_ranking_a_child_outside_the_population_is_an_error(toy, fitted):
    """The list must never rank a child who cannot be in it (or cannot be positive)."""
    panel, _, _ = toy
    _, out, cfg = fitted
    scores = pd.read_parquet(out / "scores.parquet")
    pop = population_for(cfg.models, "young_carer")
    merged = scores[["child_id", "fiscal_year"]].merge(panel, on=["child_id", "fiscal_year"])
    with pytest.raises(MimamoriError, match="outside the eligible population of young_carer"):
        pop.check(merged, "scores.parquet")  # physical_abuse's 6-9-year-olds are not 10-14


def test_young_carer_is_scored_only_within_its_age_range(toy, tmp_path):
    panel, cat, truth = toy
    cfg = toy_cfg(tmp_path)
    m.fit_target(panel, cat, cfg, "young_carer", tmp_path / "yc", truth)
    scores = pd.read_parquet(tmp_path / "yc" / "scores.parquet")
    ages = scores[["child_id", "fiscal_year"]].merge(panel, on=["child_id", "fiscal_year"])
    assert ages["school_age"].between(10, 14).all() and len(ages) == len(scores)
    metrics = json.loads((tmp_path / "yc" / "metrics.json").read_text(encoding="utf-8"))
    assert (metrics["population"]["min_age"], metrics["population"]["max_age"]) == (10, 14)


def test_a_target_without_a_population_is_a_config_error(toy, tmp_path):
    panel, cat, _ = toy
    panel = panel.assign(label_neglect=panel["label_physical_abuse"], known_neglect=0)
    with pytest.raises(MimamoriError, match="populations.neglect"):
        m.fit_target(panel, cat, toy_cfg(tmp_path), "neglect", tmp_path / "n")


def test_tuning_keeps_every_candidate_fold_score(fitted):
    _, out, _ = fitted
    tun = pd.read_parquet(out / "tuning.parquet")
    assert sorted(tun["test_year"].unique()) == [2019, 2020, 2021]
    for (year, _fam), part in tun.groupby(["test_year", "family"]):
        assert part["candidate"].nunique() == 2
        assert len(part) == 2 * min(2, year - 2018)  # candidates x folds before the test year
        assert part.loc[part["chosen"], "candidate"].nunique() == 1
        assert (part["valid_year"] < year).all()  # never the test year or later


def test_segment_table_sums_to_population(toy, fitted):
    """The reference tree's segments add up to the eligible training child-years, with an
    exact CI around every risk ratio and the risk ratios along each path."""
    panel, _, _ = toy
    _, out, cfg = fitted
    seg = pd.read_csv(out / "segment_table.csv")
    eligible = panel[population_for(cfg.models, "physical_abuse").mask(panel)]
    train = eligible[
        eligible["fiscal_year"].between(2017, 2020) & eligible["label_physical_abuse"].notna()
    ]
    assert seg["child_years"].sum() == len(train)
    assert seg["positives"].sum() == train["label_physical_abuse"].sum()
    assert seg["test_child_years"].sum() == (eligible["fiscal_year"] == 2021).sum()
    assert seg["rule"].str.len().gt(0).all()
    rate = seg["positives"].sum() / seg["child_years"].sum()
    assert np.allclose(seg["risk_ratio"], seg["rate"] / rate)
    assert (seg["rr_ci_low"] <= seg["risk_ratio"]).all()
    assert (seg["risk_ratio"] <= seg["rr_ci_high"]).all()
    last = seg["path_risk_ratios"].astype(str).str.split(" → ").str[-1].astype(float)
    assert np.allclose(last, seg["risk_ratio"], atol=0.006)
    nodes = pd.read_csv(out / "reference_tree_nodes.csv")
    assert nodes.loc[nodes["node"] == 0, "child_years"].item() == len(train)


def test_full_fit_is_deterministic(toy, tmp_path):
    panel, cat, truth = toy
    cfg = toy_cfg(tmp_path)
    m.fit_target(panel, cat, cfg, "young_carer", tmp_path / "a")
    m.fit_target(panel, cat, cfg, "young_carer", tmp_path / "b")
    a = pd.read_parquet(tmp_path / "a" / "scores.parquet")
    b = pd.read_parquet(tmp_path / "b" / "scores.parquet")
    pd.testing.assert_frame_equal(a, b)
    ta = pd.read_parquet(tmp_path / "a" / "tuning.parquet")
    tb = pd.read_parquet(tmp_path / "b" / "tuning.parquet")
    pd.testing.assert_frame_equal(ta, tb)
    assert (tmp_path / "a" / "model_lightgbm.txt").read_text() == (
        tmp_path / "b" / "model_lightgbm.txt"
    ).read_text()


def test_class_weighting_changes_the_fit(toy):
    panel, cat, _ = toy
    feats = d.check_inputs(panel, cat, "physical_abuse")
    sub = panel[panel["label_physical_abuse"].notna()]
    X, y = d.feature_matrix(sub, feats), sub["label_physical_abuse"].to_numpy(int)
    assert y.mean() < 0.1  # imbalanced
    base = {
        "n_estimators": 30,
        "learning_rate": 0.1,
        "num_leaves": 7,
        "min_child_samples": 20,
        "reg_lambda": 1.0,
        "colsample_bytree": 1.0,
        "subsample": 1.0,
    }
    data = fam.lgbm_dataset(X, y, 63, feats)
    p_none = fam.fit_lgbm(data, {**base, "weighting": "none"}, 0, 1).predict(X)
    p_bal = fam.fit_lgbm(data, {**base, "weighting": "balanced"}, 0, 1).predict(X)
    # unweighted predictions sit near the base rate; weighted ones are pushed towards 0.5
    assert abs(p_none.mean() - y.mean()) < 0.02
    assert p_bal.mean() > 3 * p_none.mean()
    lr_none = fam.fit_logistic(X, y, {"C": 1.0, "weighting": "none"}, 0, 300)
    lr_bal = fam.fit_logistic(X, y, {"C": 1.0, "weighting": "balanced"}, 0, 300)
    assert lr_bal.predict_proba(X)[:, 1].mean() > 3 * lr_none.predict_proba(X)[:, 1].mean()
    assert not np.allclose(lr_none[-1].coef_, lr_bal[-1].coef_)


def test_best_single_variable_is_chosen_on_training_years_only(toy):
    panel, cat, _ = toy
    feats = d.check_inputs(panel, cat, "physical_abuse")
    binary = d.binary_features(cat, feats)
    lab = panel[panel["label_physical_abuse"].notna()].copy()
    # plant a perfect predictor that exists only in the test year: it must not be chosen
    lab["noise_b"] = np.where(lab["fiscal_year"] == 2021, lab["label_physical_abuse"], 0.0)
    table = bl.best_single_variable(
        lab, binary, "label_physical_abuse", [2017, 2018, 2019, 2020], 30
    )
    assert table["feature"].iloc[0] != "noise_b"
    assert table["feature"].iloc[0] in {"yc_public_assistance", "yc_care_need"}


def test_sample_candidates_deterministic_and_defaults_first():
    space = {"a": [1, 2, 3], "b": ["x", "y"]}
    c1 = tu.sample_candidates(space, {"a": 9, "b": "z"}, 4, seed=3)
    assert c1 == tu.sample_candidates(space, {"a": 9, "b": "z"}, 4, seed=3)
    assert c1[0] == {"a": 9, "b": "z"} and len(c1) == 4
    assert len({str(c) for c in c1}) == 4


def test_calibration_choice_and_probabilities():
    assert fam.choose_calibration(20, 500) == "platt"
    assert fam.choose_calibration(800, 500) == "isotonic"
    rng = np.random.default_rng(0)
    s = rng.normal(size=5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(s - 3)))).astype(int)
    p = fam.Calibrator("platt").fit(s, y).predict(s)
    assert abs(p.mean() - y.mean()) < 0.01 and np.all(np.diff(p[np.argsort(s)]) >= 0)


def test_bad_inputs_raise_clear_errors(toy):
    panel, cat, _ = toy
    with pytest.raises(MimamoriError, match="label_neglect"):
        d.check_inputs(panel, cat, "neglect")
    bad = panel.copy()
    bad.loc[5, "label_physical_abuse"] = 2
    with pytest.raises(MimamoriError, match="row 5, column label_physical_abuse"):
        d.check_inputs(bad, cat, "physical_abuse")
    bad = panel.copy()
    bad["noise_a"] = "x"
    with pytest.raises(MimamoriError, match="noise_a"):
        d.feature_matrix(bad, ["noise_a"])


def test_main_cli_writes_stamp_last_and_audit(toy, tmp_path):
    panel, cat, _ = toy
    (tmp_path / "panel").mkdir()
    panel.to_parquet(tmp_path / "panel" / "panel.parquet")
    cat.to_csv(tmp_path / "panel" / "feature_catalogue.csv", index=False)
    cfg = toy_cfg(tmp_path)
    cfg = cfg.with_overrides({"run": {"synthetic": False}})
    assert m.main(cfg, ["--target", "young_carer"]) == 0
    out = tmp_path / "models" / "young_carer"
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= stamp for p in out.iterdir())
    assert "models:young_carer" in (tmp_path / "audit.log").read_text(encoding="utf-8")


def test_main_without_panel_is_a_clear_error(tmp_path):
    cfg = toy_cfg(tmp_path)
    with pytest.raises(MimamoriError, match="panel.parquet: not found"):
        m.main(cfg, ["--target", "young_carer"])


@pytest.mark.slow
def test_notebook_03_runs_on_written_artifacts(toy, tmp_path, monkeypatch):
    """The report reads artifacts only: run its source top to bottom on a toy fit."""
    import matplotlib

    matplotlib.use("Agg")
    from helpers.config import REPO_ROOT

    panel, cat, truth = toy
    (tmp_path / "panel").mkdir()
    panel.to_parquet(tmp_path / "panel" / "panel.parquet")
    cat.to_csv(tmp_path / "panel" / "feature_catalogue.csv", index=False)
    cfg = toy_cfg(tmp_path)
    m.fit_target(panel, cat, cfg, "physical_abuse", tmp_path / "models" / "physical_abuse", truth)
    source = (REPO_ROOT / "notebooks" / "03_model.py").read_text(encoding="utf-8")
    source = source.replace('profile = "tiny"', 'profile = ""', 1)
    source = source.replace('data_dir = ""', f"data_dir = {str(tmp_path)!r}", 1)
    monkeypatch.setenv("MIMAMORI_DATA", str(tmp_path))
    exec(compile(source, "03_model.py", "exec"), {"__name__": "__main__"})


def test_test_year_labels_never_reach_tuning_or_the_model(toy, fitted, tmp_path):
    """Scrambling the test year's labels changes the evaluation, never the fitted models."""
    panel, cat, truth = toy
    _, out, cfg = fitted
    scrambled = panel.copy()
    test = scrambled["fiscal_year"] == 2021
    rng = np.random.default_rng(0)
    scrambled.loc[test, "label_physical_abuse"] = (rng.random(test.sum()) < 0.5).astype(float)
    m.fit_target(scrambled, cat, cfg, "physical_abuse", tmp_path / "s", truth_probs=truth)
    assert (tmp_path / "s" / "model_lightgbm.txt").read_text() == (
        out / "model_lightgbm.txt"
    ).read_text()
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "s" / "tuning.parquet"), pd.read_parquet(out / "tuning.parquet")
    )
    a = pd.read_parquet(tmp_path / "s" / "scores.parquet")
    b = pd.read_parquet(out / "scores.parquet")
    np.testing.assert_array_equal(a["score"], b["score"])
    assert not a["label"].equals(b["label"])


def test_runs_and_warns_with_almost_no_events(tmp_path):
    """The tiny city may hold a handful of events: everything still runs and says so."""
    panel, cat, truth = make_toy_panel(n_children=400, seed=3, base_logit=-7.5)
    panel.loc[panel["fiscal_year"] == 2021, "label_physical_abuse"] = 0.0  # no test-year event
    panel.loc[(panel["fiscal_year"] == 2017), "label_physical_abuse"] = 0.0
    panel.loc[panel.index[:2], "label_physical_abuse"] = 1.0  # two events in 2017
    cfg = toy_cfg(tmp_path)
    metrics = m.fit_target(panel, cat, cfg, "physical_abuse", tmp_path / "pa", truth_probs=truth)
    assert metrics["test"]["events"] == 0
    assert np.isnan(metrics["headline"]["model"]["roc_auc"]["value"])
    assert any("events" in w for w in metrics["warnings"])
    assert (tmp_path / "pa" / "metrics.json").exists()
