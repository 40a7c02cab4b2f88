"""helpers.models.steps one step at a time (typed inputs and outputs), and the shared helpers
they use: ``missing_last`` and ``helpers.oracle``."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError, oracle
from helpers.ingest.masking import DEMO_KEY, pseudonym
from helpers.models import evaluation as ev
from helpers.models import steps
from helpers.models.settings import FitSettings
from helpers.paths import ModelPaths
from tests.models.test_models import make_toy_panel, toy_cfg


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    panel, cat, truth = make_toy_panel(n_children=800, seed=1)
    cfg = toy_cfg(tmp_path_factory.mktemp("steps"))
    s = FitSettings.from_config(cfg)
    prep = steps.prepare(panel, cat, "physical_abuse", s)
    tuned = steps.tune(prep, s)
    fitted = steps.fit_final(prep, tuned, s)
    calib = steps.calibrate(prep, tuned, fitted, s)
    scored = steps.score(prep, tuned, fitted, calib, truth, s)
    evaluation = steps.evaluate(prep, fitted, scored, s)
    diag = steps.diagnose(prep, tuned, fitted, scored, evaluation, s)
    fit = steps.Fit(prep, tuned, fitted, calib, scored, evaluation, diag)
    return panel, cat, truth, cfg, s, fit


def test_prepare_keeps_the_test_year_out_of_every_fold(run):
    panel, _, _, _, _, fit = run
    p = fit.prep
    assert p.test_year == 2021 and p.train_years == [2017, 2018, 2019, 2020]
    assert [v for _, v in p.folds] == [2019, 2020]
    assert all(max(tr) < v for tr, v in p.folds)
    known = panel["known_physical_abuse"].to_numpy() == 1
    assert p.usable.sum() == (~known & panel["label_physical_abuse"].notna()).sum()
    assert len(p.y) == len(p.year) == len(p.X) == p.usable.sum()
    assert [f["valid_year"] for f in p.fold_info] == [2019, 2020]


def test_prepare_refuses_training_years_without_events(run):
    panel, cat, _, _, s, _ = run
    none = panel.assign(
        label_physical_abuse=np.where(
            panel["fiscal_year"] < 2021, 0.0, panel["label_physical_abuse"]
        )
    )
    with pytest.raises(MimamoriError, match="no true cases in training years"):
        steps.prepare(none, cat, "physical_abuse", s)


def test_tune_scores_every_candidate_on_every_fold(run):
    _, _, _, _, s, fit = run
    t = fit.tuned
    assert set(t.chosen) == {"lightgbm", "logistic"}
    assert len(t.tuning) == 2 * 2 * 2  # families x candidates x folds
    for family, scores in t.valid_scores.items():
        assert [len(a) for a in scores] == [
            int((fit.prep.year == v).sum()) for _, v in fit.prep.folds
        ], family
    assert t.primary in t.chosen


def test_primary_model_from_config_overrides_auto(run):
    _, _, _, cfg, _, fit = run
    s = FitSettings.from_config(cfg.with_overrides({"models": {"primary_model": "logistic"}}))
    assert steps.tune(fit.prep, s).primary == "logistic"


def test_fit_final_uses_training_years_only(run):
    _, _, _, _, _, fit = run
    p, f = fit.prep, fit.fitted
    assert f.base_rate_train == pytest.approx(p.y[p.train_mask].mean())
    assert f.segments["child_years"].sum() == p.train_mask.sum()
    assert set(f.models) == {"lightgbm", "logistic"}


def test_calibrate_on_validation_years(run):
    _, _, _, _, s, fit = run
    c = fit.calib
    valid = np.isin(fit.prep.year, [v for _, v in fit.prep.folds])
    assert c.validation_events == int(fit.prep.y[valid].sum())
    assert c.method == "platt"  # few events: never isotonic
    for family, cal in c.calibrators.items():
        p = cal.predict(np.concatenate(fit.tuned.valid_scores[family]))
        assert p.mean() == pytest.approx(fit.prep.y[valid].mean(), abs=0.01)


def test_calibrate_without_events_warns(run):
    _, _, _, _, s, fit = run
    prep = fit.prep
    quiet = dataclasses.replace(prep)  # a copy without the cached arrays
    quiet.__dict__["y"] = np.where(np.isin(prep.year, [2019, 2020]), 0, prep.y)
    c = steps.calibrate(quiet, fit.tuned, fit.fitted, s)
    assert all(v is None for v in c.calibrators.values())
    assert any("no events to calibrate" in w for w in c.warnings)


def test_score_ranks_every_test_child_not_already_known(run):
    _, _, truth, _, _, fit = run
    sc = fit.scored.scores
    assert (sc["fiscal_year"] == 2021).all()
    known = sc["known"] == 1
    assert sc.loc[known, "rank"].isna().all()
    assert sorted(sc.loc[~known, "rank"].astype(int)) == list(range(1, (~known).sum() + 1))
    assert sc["oracle_p"].notna().all() and fit.scored.oracle_available
    order = sc.loc[~known].sort_values("rank")["score"].to_numpy()
    assert np.all(np.diff(order) <= 0)


def test_evaluate_covers_every_ranking_and_comparison(run):
    _, _, _, _, s, fit = run
    e = fit.evaluation
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
    assert e.oracle["oracle_expected_hits"] > 0


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
    assert d.subsets["n"].sum() == len(fit.evaluation.evs)


def test_write_puts_the_stamp_last(run, tmp_path):
    _, _, _, _, s, fit = run
    out = ModelPaths(tmp_path / "physical_abuse")
    metrics = steps.write(fit, out, s)
    stamp = out.metrics.stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= stamp for p in out.dir.iterdir())
    assert json.loads(out.metrics.read_text(encoding="utf-8"))["k"] == metrics["k"] == s.k
    params = json.loads(out.params.read_text(encoding="utf-8"))
    assert params["primary_model"] == fit.tuned.primary


# ----------------------------------------------------------------------- missing last
def test_missing_last_puts_missing_scores_below_every_known_one():
    s = ev.missing_last([0.5, np.nan, -3.0, -np.inf, 2.0])
    assert s[1] == s[3] == -4.0 and not np.isnan(s).any()
    assert (ev.missing_last([np.nan, np.nan]) == 0).all()
    ranks = ev.rank_with_tiebreak([np.nan, 1.0, 0.0], seed=0)
    assert ranks.tolist() == [3, 1, 2]
    # the original array is untouched
    a = np.array([np.nan, 1.0])
    ev.missing_last(a)
    assert np.isnan(a[0])


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
