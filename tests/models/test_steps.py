"""helpers.models.steps / summary / artefacts one step at a time (typed inputs and outputs), and
the shared helpers they use: ``missing_last``, ``helpers.oracle`` and the backtest pooling."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError, oracle
from helpers.ingest.masking import DEMO_KEY, pseudonym
from helpers.models import backtest as bt
from helpers.models import evaluation as ev
from helpers.models import steps, summary
from helpers.models.artefacts import Fit, scores_frame, write
from helpers.models.settings import FitSettings
from helpers.models.tuning import FoldCache
from helpers.paths import ModelPaths
from tests.models.test_models import make_toy_panel, toy_cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    panel, cat, truth = make_toy_panel(n_children=800, seed=1)
    cfg = toy_cfg(tmp_path_factory.mktemp("steps"))
    s = FitSettings.from_config(cfg)
    prep = steps.prepare(panel, cat, "physical_abuse", s)
    cache = FoldCache()
    runs = [
        steps.run_origin(
            prep, o, truth, s, cache, explain_list=o is prep.origins[-1], full=o is prep.origins[-1]
        )
        for o in prep.origins
    ]
    fit = Fit(prep, runs, summary.backtest(runs, s), summary.diagnose(prep, runs, s))
    return panel, cat, truth, cfg, s, fit


def test_prepare_sets_out_the_rolling_origins(run):
    panel, _, _, _, _, fit = run
    p = fit.prep
    assert [o.test_year for o in p.origins] == [2019, 2020, 2021]
    for o in p.origins:
        assert o.evaluated and o.train_years == list(range(2017, o.test_year))
        assert all(max(tr) < v < o.test_year for tr, v in o.folds)
    assert [v for _, v in p.origins[-1].folds] == [2019, 2020]
    assert p.usable.sum() == (p.eligible & panel["label_physical_abuse"].notna()).sum()
    assert len(p.y) == len(p.year) == len(p.X) == p.usable.sum()
    ages = panel.loc[p.eligible, "school_age"]
    assert ages.between(6, 14).all() and (panel.loc[p.eligible, "known_physical_abuse"] == 0).all()


def test_prepare_adds_a_scoring_only_origin_for_an_unlabelled_year(run):
    panel, cat, _, _, s, _ = run
    later = panel[panel["fiscal_year"] == 2021].assign(
        fiscal_year=2022, label_physical_abuse=np.nan
    )
    prep = steps.prepare(pd.concat([panel, later], ignore_index=True), cat, "physical_abuse", s)
    assert [(o.test_year, o.evaluated) for o in prep.origins][-2:] == [(2021, True), (2022, False)]
    assert prep.origins[-1].train_years == [2017, 2018, 2019, 2020, 2021]


def test_prepare_refuses_when_no_year_can_be_tested(run):
    panel, cat, _, _, s, _ = run
    none = panel.assign(label_physical_abuse=0.0)
    with pytest.raises(MimamoriError, match="need at least three labelled fiscal years"):
        steps.prepare(none, cat, "physical_abuse", s)


def test_tune_scores_every_candidate_on_every_fold_and_shares_folds(run):
    _, _, _, _, s, fit = run
    t = fit.runs[-1].tuned
    assert set(t.chosen) == {"lightgbm", "logistic"}
    assert len(t.tuning) == 2 * 2 * 2  # families x candidates x folds
    folds = fit.prep.origins[-1].folds
    for scores in t.valid_scores.values():
        assert [len(a) for a in scores] == [int((fit.prep.year == v).sum()) for _, v in folds]
    # a fold is the same whatever the test year: FY2020's scores come from one fit
    a = fit.runs[1].tuned.tuning.query("valid_year == 2019")
    b = fit.runs[2].tuned.tuning.query("valid_year == 2019")
    pd.testing.assert_series_equal(
        a["precision_at_k"].reset_index(drop=True), b["precision_at_k"].reset_index(drop=True)
    )
    assert 0 <= t.validation_precision <= 1


def test_primary_model_from_config_overrides_auto(run):
    _, _, _, cfg, _, fit = run
    s = FitSettings.from_config(cfg.with_overrides({"models": {"primary_model": "logistic"}}))
    assert steps.tune(fit.prep, fit.prep.origins[-1], s).primary == "logistic"


def test_fit_final_uses_training_years_only(run):
    _, _, _, _, _, fit = run
    p, r = fit.prep, fit.runs[-1]
    tr = p.train_mask(r.origin)
    assert r.fitted.base_rate_train == pytest.approx(p.y[tr].mean())
    assert r.fitted.segments["child_years"].sum() == tr.sum()
    assert set(r.fitted.models) == {"lightgbm", "logistic"}


def test_calibrate_on_validation_years_with_the_latest_intercept(run):
    _, _, _, _, s, fit = run
    r = fit.runs[-1]
    c, folds = r.calib, r.origin.folds
    valid = np.isin(fit.prep.year, [v for _, v in folds])
    assert c.validation_events == int(fit.prep.y[valid].sum())
    assert c.method == "platt" and c.recalibrated_on == folds[-1][1]
    latest = fit.prep.year == folds[-1][1]
    for family, cal in c.calibrators.items():  # the latest year's events are matched exactly
        assert cal.transfer_ is not None  # final scores are carried to the fold model's scale
        on_fold_scale = copy.copy(cal)
        on_fold_scale.transfer_ = None
        p = on_fold_scale.predict(r.tuned.valid_scores[family][-1])
        assert p.sum() == pytest.approx(fit.prep.y[latest].sum(), rel=1e-6)


def test_calibrate_without_events_warns(run):
    _, _, _, _, s, fit = run
    prep, r = fit.prep, fit.runs[-1]
    quiet = dataclasses.replace(prep)  # a copy without the cached arrays
    quiet.__dict__["y"] = np.where(np.isin(prep.year, [2019, 2020]), 0, prep.y)
    c = steps.calibrate(quiet, r.origin, r.tuned, r.fitted, s)
    assert all(v is None for v in c.calibrators.values())
    assert any("no events to calibrate" in w for w in c.warnings)


def test_score_ranks_every_eligible_child_of_the_year(run):
    panel, _, _, _, _, fit = run
    sc = fit.runs[-1].scored.scores
    assert (sc["fiscal_year"] == 2021).all()
    assert len(sc) == fit.prep.test_rows(2021).sum()
    assert sorted(sc["rank"].astype(int)) == list(range(1, len(sc) + 1))
    assert sc["oracle_p"].notna().all() and fit.runs[-1].scored.oracle_available
    order = sc.sort_values("rank")["score"].to_numpy()
    assert np.all(np.diff(order) <= 0)
    assert "reason_1" in sc.columns and "reason_1" not in fit.runs[0].scored.scores.columns


def test_explanation_is_of_the_model_that_built_the_list(run):
    _, _, _, _, s, fit = run
    r = fit.runs[-1]
    contrib, base = steps.explain_primary(fit.prep, r.tuned, r.fitted, r.scored.Xt, s)
    total = contrib.sum(axis=1).to_numpy() + base
    np.testing.assert_allclose(total, r.scored.scores["score"].to_numpy(), atol=1e-4)


def test_evaluate_covers_every_ranking_and_comparison(run):
    _, _, _, _, s, fit = run
    e = fit.runs[-1].evaluation
    assert set(e.headline) == {
        "model",
        "lightgbm",
        "logistic",
        "best_single_variable",
        "yc_rule_score",
        "reference_tree",
        "oracle",
    }
    assert set(e.comparisons) == {f"model_vs_{b}" for b in steps.BASELINES}
    assert len(e.evs) == e.mask.sum() and e.y.sum() == e.headline["model"]["events"]
    assert 0 < e.oracle["model_expected_hits"] <= e.oracle["oracle_expected_hits"]
    assert fit.runs[0].evaluation.headline == {}  # earlier years: pooled only


def test_backtest_pools_the_years(run):
    _, _, _, _, s, fit = run
    b = fit.backtest
    assert b.record["test_years"] == [2019, 2020, 2021]
    hits = sum(r["precision_at_k"] * min(s.k, r["n_evaluated"]) for r in b.record["per_year"])
    places = sum(min(s.k, r["n_evaluated"]) for r in b.record["per_year"])
    assert b.record["pooled"]["precision_at_k"]["value"] == pytest.approx(hits / places)
    assert list(b.per_year["test_year"]) == [2019, 2020, 2021]
    assert set(b.calibration) >= {"test_observed", "test_expected", "oe", "ok"}


def test_diagnose_tables(run):
    _, _, _, _, s, fit = run
    d = fit.diagnostics
    assert set(d.stability["compared_with"]) == {
        "best_single_variable",
        "yc_rule_score",
        "tree_score",
    }
    assert d.missed["events"] == d.missed["caught"] + d.missed["missed"]
    assert "test_precision_at_k" in d.single.columns
    assert d.subsets["n"].sum() == len(fit.runs[-1].evaluation.evs)
    assert {"ci_low", "ci_high", "too_few_events"} <= set(d.subsets.columns)
    assert list(zip(d.year_to_year["from_year"], d.year_to_year["to_year"], strict=True)) == [
        (2019, 2020),
        (2020, 2021),
    ]
    assert d.year_to_year["jaccard"].between(0, 1).all()
    assert len(d.fold_to_fold) == 3  # two fold models and the final one, pairwise
    assert d.fold_to_fold["jaccard"].between(0, 1).all()
    assert (d.crosstab["q_value"].dropna() >= d.crosstab["p_value"].dropna() - 1e-12).all()


def test_write_puts_the_stamp_last_and_withholds_risk_ratios_when_calibration_fails(run, tmp_path):
    _, _, _, _, s, fit = run
    out = ModelPaths(tmp_path / "physical_abuse")
    metrics = write(fit, out, s)
    stamp = out.metrics.stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= stamp for p in out.dir.iterdir())
    assert json.loads(out.metrics.read_text(encoding="utf-8"))["k"] == metrics["k"] == s.k
    params = json.loads(out.params.read_text(encoding="utf-8"))
    assert params["primary_model"] == fit.runs[-1].tuned.primary
    failing = dataclasses.replace(
        fit,
        backtest=dataclasses.replace(
            fit.backtest, calibration={**fit.backtest.calibration, "ok": False}
        ),
    )
    assert scores_frame(failing)["risk_ratio"].isna().all()
    assert scores_frame(fit)["risk_ratio"].notna().all() or not fit.backtest.calibration_ok


def test_notes_follow_the_chosen_weighting(run, tmp_path):
    _, _, _, _, s, fit = run
    from helpers.models.artefacts import explanation_source

    r = fit.runs[-1]
    weighting = r.tuned.chosen[r.tuned.primary]["params"]["weighting"]
    text = explanation_source(r)
    assert ("unweighted" in text) == (weighting == "none")
    assert (f"weighting={weighting}" in text) == (weighting != "none")


# ----------------------------------------------------------------------- missing last
def test_missing_last_puts_missing_scores_below_every_known_one():
    s = ev.missing_last([0.5, np.nan, -3.0, -np.inf, 2.0])
    assert s[1] == s[3] == -4.0 and not np.isnan(s).any()
    assert (ev.missing_last([np.nan, np.nan]) == 0).all()
    ranks = ev.rank_with_tiebreak([np.nan, 1.0, 0.0], seed=0)
    assert ranks.tolist() == [3, 1, 2]
    a = np.array([np.nan, 1.0])
    ev.missing_last(a)
    assert np.isnan(a[0])  # the input is untouched


# ------------------------------------------------------------------- backtest helpers
def test_pooled_expected_hits_and_oracle_share():
    rng = np.random.default_rng(0)
    years = []
    for t in range(3):
        p = rng.beta(0.5, 20, 2000)
        y = (rng.random(2000) < p).astype(float)
        years.append(
            bt.YearData(
                2020 + t, y, p, {"model": p + rng.normal(0, 0.01, 2000), "rule": np.round(p * 10)}
            )
        )
    out = bt.pooled(years, 50, ["rule"], n_boot=50, seed=1)
    oracle_hits = sum(np.sort(yd.p_true)[::-1][:50].sum() for yd in years)
    assert out["expected:oracle"]["value"] == pytest.approx(oracle_hits / 150)
    assert 0.9 < out["share"]["value"] <= 1.0  # the model ranks by p plus a little noise
    assert out["share"]["ci_low"] <= out["share"]["value"] <= out["share"]["ci_high"]
    assert "diff:rule" in out and "expdiff:rule" in out


def test_observed_expected_exact_interval():
    y = np.r_[np.ones(68), np.zeros(9932)]
    check = bt.observed_expected(y, np.full(10_000, 40.4 / 10_000))
    assert check["oe"] == pytest.approx(68 / 40.4)
    assert check["oe_ci_low"] > 1 and not check["ok"]  # the physical-abuse year
    assert bt.observed_expected(y, np.full(10_000, 68 / 10_000))["ok"]
    assert bt.poisson_p(68, 53.6) == pytest.approx(0.0575, abs=0.03)


# ------------------------------------------------------------------------------ oracle
def test_oracle_rekeys_truth_to_the_pseudonyms(tmp_path):
    truth = pd.DataFrame(
        {
            "resident_code": ["1001", "1002", "1002"],
            "fiscal_year": [2022, 2022, 2022],
            "target": ["young_carer", "young_carer", "physical_abuse"],
            "p": [0.1, 0.2, 0.3],
        }
    )
    keyed = oracle.pseudonymise(truth, DEMO_KEY)
    assert "resident_code" not in keyed.columns
    assert keyed["child_id"].iloc[0] == pseudonym("1001", DEMO_KEY, "resident")
    yc = oracle.truth_for(keyed, "young_carer")
    assert len(yc) == 2 and set(yc.columns) == {"child_id", "fiscal_year", "p"}
    frame = pd.DataFrame(
        {
            "child_id": [pseudonym("1002", DEMO_KEY, "resident"), "nobody"],
            "fiscal_year": [2022, 2022],
        }
    )
    out = oracle.attach(frame, keyed, "physical_abuse")
    assert out["oracle_p"].iloc[0] == 0.3 and np.isnan(out["oracle_p"].iloc[1])
    assert oracle.attach(frame, None, "physical_abuse") is frame


def test_oracle_is_absent_on_real_data(tmp_path):
    cfg = toy_cfg(tmp_path).with_overrides({"run": {"synthetic": False}})
    assert oracle.load_truth(cfg) is None
    assert oracle.load_truth(toy_cfg(tmp_path)) is None  # synthetic, but no truth written


def test_scores_per_child_partition_on_dask_equal_the_local_scores(run):
    """run.engine: dask scores the test year per hash partition of child_id on a LocalCluster:
    the same scores, in the same order, as the local engine (so the same list and metrics)."""
    from helpers.models.scoring import partitioned_margin

    _, _, _, cfg, _, fit = run
    dask_cfg = cfg.with_overrides(
        {"run": {"engine": "dask", "dask": {"n_workers": 2, "partitions": 3}}}
    )
    r = fit.runs[-1]
    ids = r.scored.scores["child_id"].to_numpy()
    for family, model in r.fitted.models.items():
        got = partitioned_margin(dask_cfg, model, r.scored.Xt, ids)
        np.testing.assert_array_equal(got, r.scored.scores[f"score_{family}"].to_numpy())
    assert FitSettings.from_config(dask_cfg).run_cfg is dask_cfg
    assert FitSettings.from_config(cfg).run_cfg is None


def test_families_tuned_in_background_give_the_same_fit(run):
    """fit_beside (families in background threads, LightGBM's fold years two at a time, the
    bootstrap beside the backtest) = the steps one after the other."""
    from helpers.models import background

    _, _, truth, _, s, fit = run
    # no time budget: the LightGBM fold years are fitted two at a time (YEARS_AT_ONCE)
    tuning = dataclasses.replace(s.models.tuning, time_budget_s=None)
    s = dataclasses.replace(s, models=dataclasses.replace(s.models, tuning=tuning))
    other = background.fit_beside(fit.prep, truth, s, FoldCache())
    runs = other.runs
    assert [r.origin.test_year for r in runs] == [r.origin.test_year for r in fit.runs]
    for a, b in zip(runs, fit.runs, strict=True):
        pd.testing.assert_frame_equal(a.tuned.tuning, b.tuned.tuning)
        pd.testing.assert_frame_equal(a.scored.scores, b.scored.scores)
        assert a.calib.as_dict(a.tuned.primary) == b.calib.as_dict(b.tuned.primary)
    a, b = runs[-1].evaluation, fit.runs[-1].evaluation
    assert a is not None and b is not None and a.headline
    assert (a.headline, a.comparisons, a.oracle) == (b.headline, b.comparisons, b.oracle)
    assert other.backtest.record == fit.backtest.record
    pd.testing.assert_frame_equal(other.diagnostics.odds, fit.diagnostics.odds)
    pd.testing.assert_frame_equal(other.diagnostics.fairness, fit.diagnostics.fairness)


def test_lightgbm_fold_fits_go_to_the_cluster_on_the_dask_engine(run, monkeypatch):
    """The dask hook: with ``distributed.enabled``, every LightGBM fold fit (tuning and the
    final model per test year) is handed the fold's rows and their child ids."""
    from helpers.models import distributed, tuning

    _, _, _, _, s, fit = run
    prep, calls = fit.prep, []

    def fake_fit(cfg, X, y, ids, cand, seed, max_bin, features):
        calls.append((len(X), len(ids), cand["n_estimators"]))
        assert np.isin(ids, prep.child_ids).all()
        return None

    monkeypatch.setattr(distributed, "enabled", lambda cfg: True)
    monkeypatch.setattr(distributed, "fit_lgbm_distributed", fake_fit)
    sd = dataclasses.replace(s, run_cfg=object())  # type: ignore[arg-type]
    origin = prep.origins[-1]
    res = tuning.tune_family(
        "lightgbm",
        prep.X,
        prep.y,
        prep.year,
        origin.folds,
        sd,
        prep.features,
        FoldCache(),
        prep.fit_ids(sd),
    )
    assert len(calls) == len(res.table) and all(n == m for n, m, _ in calls)
    cache = FoldCache()
    steps.final_model(prep, origin, "lightgbm", res.info["params"], sd, cache)
    assert calls[-1][0] == prep.train_mask(origin).sum()


def test_lightgbm_shap_goes_per_partition_on_the_dask_engine(run, monkeypatch):
    """The dask hook for TreeSHAP: the explained rows and their child ids are handed to
    ``distributed.partitioned_contrib``; the values are the local call's."""
    from helpers.models import distributed

    _, _, _, _, s, fit = run
    r = fit.runs[-1]
    tuned = dataclasses.replace(r.tuned, primary="lightgbm")
    sd = dataclasses.replace(
        s, models=dataclasses.replace(s.models, shap_method="lightgbm"), run_cfg=object()
    )
    seen = []

    def fake(cfg, booster, X, ids):
        seen.append(len(ids))
        return booster.predict(X, pred_contrib=True)

    monkeypatch.setattr(distributed, "partitioned_contrib", fake)
    ids = r.scored.scores["child_id"].to_numpy()
    got = steps.explain_primary(fit.prep, tuned, r.fitted, r.scored.Xt, sd, ids)
    local = steps.explain_primary(fit.prep, tuned, r.fitted, r.scored.Xt, s)
    assert seen == [len(ids)]
    pd.testing.assert_frame_equal(got[0], local[0])
    assert got[1] == local[1]


def test_one_local_worker_runs_the_steps_in_turn(run, monkeypatch):
    """run.local_workers: 1 keeps the models stage to one step at a time (no threads)."""
    from helpers.models import background

    _, _, truth, _, s, fit = run
    beside: list[int] = []
    monkeypatch.setattr(background, "fit_beside", lambda *a: beside.append(1))
    monkeypatch.setattr(background, "run_in_turn", lambda *a: fit.runs)
    background.fit(fit.prep, truth, dataclasses.replace(s, workers=1))
    assert beside == [] and s.workers == 2
    background.fit(fit.prep, truth, s)
    assert beside == [1]
