"""helpers.models.explain: SHAP additivity, linear contributions, reason codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.models import explain
from helpers.models import families as m


@pytest.fixture(scope="module")
def toy_fit():
    rng = np.random.default_rng(0)
    n = 3000
    X = rng.normal(size=(n, 4)).astype(np.float32)
    X[rng.random(n) < 0.1, 2] = np.nan
    logit = -3 + 1.5 * X[:, 0] + np.where(X[:, 1] > 0.5, 1.0, 0.0) + np.nan_to_num(X[:, 2])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    feats = ["f0", "f1", "f2", "f3"]
    cand = {
        "n_estimators": 40,
        "learning_rate": 0.1,
        "num_leaves": 7,
        "min_child_samples": 20,
        "reg_lambda": 1.0,
        "colsample_bytree": 1.0,
        "subsample": 1.0,
        "weighting": "balanced",
    }
    booster = m.fit_lgbm(m.lgbm_dataset(X, y, 63, feats), cand, 0, 1)
    return X, y, feats, booster


@pytest.mark.parametrize("method", ["tree_explainer", "lightgbm"])
def test_shap_values_add_up_to_raw_score(toy_fit, method):
    X, _, feats, booster = toy_fit
    values, base = explain.tree_shap(booster, X, feats, method=method)
    raw = booster.predict(X, raw_score=True)
    assert values.shape == (len(X), 4)
    np.testing.assert_allclose(values.sum(axis=1).to_numpy() + base, raw, atol=1e-4)


def test_tree_explainer_matches_lightgbm_treeshap(toy_fit):
    X, _, feats, booster = toy_fit
    a, _ = explain.tree_shap(booster, X[:200], feats, "tree_explainer")
    b, _ = explain.tree_shap(booster, X[:200], feats, "lightgbm")
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), atol=1e-4)


def test_linear_contributions_add_up_to_decision_function(toy_fit):
    X, y, feats, _ = toy_fit
    pipe = m.fit_logistic(X, y, {"C": 1.0, "weighting": "balanced"}, 0, 300)
    contrib = explain.linear_contributions(pipe, X, feats)
    assert list(contrib.columns) == feats
    np.testing.assert_allclose(
        contrib.sum(axis=1) + pipe[-1].intercept_[0], pipe.decision_function(X), atol=1e-6
    )


def test_reason_codes_top_positive_only():
    contrib = pd.DataFrame({"a": [0.5, -0.1], "b": [0.2, -0.3], "c": [-0.4, 0.05]})
    r = explain.reason_codes(contrib, {"a": "生活保護", "b": "要介護", "c": "手当"}, n=3)
    assert list(r.loc[0, ["reason_1", "reason_2", "reason_3"]]) == ["生活保護", "要介護", None]
    assert list(r.loc[1, ["reason_1", "reason_2", "reason_3"]]) == ["手当", None, None]
    assert r.loc[0, "reason_1_logodds"] == 0.5 and np.isnan(r.loc[1, "reason_2_logodds"])


def test_importance_and_plots(toy_fit):
    import matplotlib

    matplotlib.use("Agg")
    X, _, feats, booster = toy_fit
    values, _ = explain.tree_shap(booster, X, feats, "lightgbm")
    imp = explain.global_importance(values, {"f0": "項目0"})
    assert imp.loc[0, "feature"] == "f0" and imp.loc[0, "label_ja"] == "項目0"
    Xdf = pd.DataFrame(X, columns=feats)
    assert explain.plot_importance(imp) is not None
    assert explain.plot_beeswarm(values, Xdf, {}, top=3) is not None
    assert explain.plot_dependence(values, Xdf, "f2", {}) is not None


def test_explained_rows_are_the_list_with_ties_and_a_fixed_sample():
    score = np.array([5.0, 4.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0])
    rows, listed, sampled = explain.explained_rows(score, 2, 2, seed=0)
    assert set(rows[listed]) == {0, 1, 2}  # the k-th score is tied: both tied rows are listed
    assert sampled.sum() == 2
    again = explain.explained_rows(score, 2, 2, seed=0)
    np.testing.assert_array_equal(rows, again[0])
    cols = explain.reason_columns(
        pd.DataFrame({"a": [1.0, -1.0], "b": [0.5, 2.0]}), np.array([1, 3]), 5, {"a": "A"}, n=2
    )
    assert list(cols["reason_1"]) == [None, "A", None, "b", None]
    assert np.isnan(cols["reason_1_logodds"][0]) and cols["reason_1_logodds"][3] == 2.0


def test_median_imputer_equals_simple_imputer():
    import warnings

    from sklearn.impute import SimpleImputer

    from helpers.models.families import MedianImputer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = np.nan
    X[:, 3] = np.nan  # all missing: dropped by both
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = SimpleImputer(strategy="median", add_indicator=True).fit(X)
        b = MedianImputer(strategy="median", add_indicator=True).fit(X)
        np.testing.assert_array_equal(a.statistics_, b.statistics_)
        np.testing.assert_array_equal(a.transform(X), b.transform(X))
