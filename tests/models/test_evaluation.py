"""helpers.models.evaluation: metrics at k with ties (hand-computed), splitter, bootstrap, fairness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.models import evaluation as ev

# scores with a tie at the k-th place: ranks 1-2 clear, then four tied at 0.5 (two positives)
Y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
S = np.array([0.9, 0.8, 0.5, 0.5, 0.5, 0.5, 0.1, 0.0])


def test_precision_at_k_without_ties():
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([5, 4, 3, 2, 1])
    assert ev.precision_at_k(y, s, 1) == 1.0
    assert ev.precision_at_k(y, s, 2) == 0.5
    assert ev.precision_at_k(y, s, 3) == pytest.approx(2 / 3)
    assert ev.recall_at_k(y, s, 3) == pytest.approx(2 / 3)
    assert ev.lift_at_k(y, s, 3) == pytest.approx((2 / 3) / (3 / 5))
    # every tie variant agrees when there is no tie at the cut
    for ties in ("worst", "best", "mean"):
        assert ev.hits_at_k(y, s, 3, ties) == 2


def test_precision_at_k_with_ties_hand_computed():
    # k=4: one positive above the tie (0.9), two slots for the 4 tied (2 pos, 2 neg)
    assert ev.hits_at_k(Y, S, 4, "worst") == 1  # tied negatives first
    assert ev.hits_at_k(Y, S, 4, "best") == 3  # tied positives first
    assert ev.hits_at_k(Y, S, 4, "mean") == pytest.approx(1 + 2 * 2 / 4)
    assert ev.precision_at_k(Y, S, 4, "worst") == 0.25
    assert ev.precision_at_k(Y, S, 4, "best") == 0.75
    assert ev.recall_at_k(Y, S, 4, "worst") == pytest.approx(1 / 3)
    assert ev.recall_at_k(Y, S, 4, "best") == 1.0
    # k=5: three slots for the tie -> worst 1 + max(0, 3-2) = 2, best 1 + 2 = 3
    assert ev.hits_at_k(Y, S, 5, "worst") == 2
    assert ev.hits_at_k(Y, S, 5, "best") == 3
    # random orderings converge on the exact expectation and are seeded
    r1 = ev.hits_at_k(Y, S, 4, "mean", n_orderings=4000, seed=1)
    assert r1 == pytest.approx(2.0, abs=0.05)
    assert r1 == ev.hits_at_k(Y, S, 4, "mean", n_orderings=4000, seed=1)


def test_all_tied_list_is_the_base_rate_on_average():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    s = np.zeros(10)
    assert ev.precision_at_k(y, s, 5, "mean") == pytest.approx(0.2)
    assert ev.precision_at_k(y, s, 5, "worst") == 0.0
    assert ev.precision_at_k(y, s, 5, "best") == 0.4
    assert ev.lift_at_k(y, s, 5, "mean") == pytest.approx(1.0)


def test_k_longer_than_list_and_bad_input():
    assert ev.precision_at_k([1, 0], [1, 2], 10) == 0.5
    with pytest.raises(MimamoriError, match="NaN"):
        ev.precision_at_k([1, 0], [np.nan, 1], 1)
    with pytest.raises(MimamoriError, match="worst, best or mean"):
        ev.hits_at_k(Y, S, 4, "median")


@pytest.mark.parametrize("years", [[2017, 2018, 2019, 2020, 2021, 2022], [2019, 2021, 2020]])
def test_temporal_splitter_never_leaks_the_test_year(years):
    folds, test_year = ev.temporal_splits(years, n_folds=3)
    assert test_year == max(years)
    assert folds, "at least one fold"
    for train, valid in folds:
        assert test_year not in train and valid != test_year
        assert all(t < valid for t in train)  # only the past trains
    assert test_year not in ev.final_train_years(years, test_year)
    assert ev.final_train_years(years, test_year) == sorted(y for y in years if y < test_year)


def test_temporal_splitter_folds_and_errors():
    folds, test = ev.temporal_splits(range(2017, 2024), n_folds=3)
    assert test == 2023
    assert [v for _, v in folds] == [2020, 2021, 2022]
    assert folds[0][0] == [2017, 2018, 2019]
    with pytest.raises(MimamoriError, match="at least 3"):
        ev.temporal_splits([2020, 2021])


def test_bootstrap_ci_is_seeded_and_brackets_the_point():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.05).astype(int)
    s = y * 0.5 + rng.random(2000)
    a = ev.bootstrap_ci(lambda yy, ss: ev.precision_at_k(yy, ss, 100, "mean"), [y, s], 200, 0.05, 3)
    b = ev.bootstrap_ci(lambda yy, ss: ev.precision_at_k(yy, ss, 100, "mean"), [y, s], 200, 0.05, 3)
    assert a == b
    assert a["ci_low"] < a["value"] < a["ci_high"]


def test_paired_difference_of_identical_lists_is_zero():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.1).astype(int)
    s = rng.random(500)
    d = ev.paired_hits_difference(y, s, s, 50, n_boot=50)
    assert d["value"] == 0 and d["ci_low"] == 0 and d["ci_high"] == 0


def test_headline_metrics_fields():
    rng = np.random.default_rng(2)
    y = (rng.random(1000) < 0.05).astype(int)
    s = y + rng.normal(size=1000)
    h = ev.headline_metrics(y, s, 50, prob=1 / (1 + np.exp(-s)), n_boot=30, n_orderings=5)
    for key in (
        "precision_at_k",
        "recall_at_k",
        "lift_at_k",
        "average_precision",
        "roc_auc",
        "brier",
    ):
        assert set(h[key]) >= {"value", "ci_low", "ci_high"}
    assert h["precision_worst"] <= h["precision_mean"] <= h["precision_best"]
    assert h["events"] == y.sum()


def test_fairness_table_flags_small_groups_and_ratios():
    n = 400
    df = pd.DataFrame(
        {"sex": ["1"] * 300 + ["2"] * 100, "label": [1] * 30 + [0] * 270 + [1] * 5 + [0] * 95}
    )
    top = np.zeros(n, bool)
    top[:20] = True  # 20 selected in group 1, all true
    top[300:302] = True  # 2 selected in group 2, both true
    f = ev.fairness_table(df, "sex", top, (0.8, 1.25), min_group_events=10)
    g1, g2 = f.set_index("group").loc["1"], f.set_index("group").loc["2"]
    assert g1["selection_rate"] == pytest.approx(20 / 300) and g1["fnr"] == pytest.approx(10 / 30)
    assert g2["selection_rate_ratio"] == pytest.approx((2 / 100) / (20 / 300))
    assert bool(g2["too_few_events"]) and "too few" in g2["verdict"]
    assert "reference" in g1["verdict"]


def test_crosstab_topk_and_missed_cases():
    df = pd.DataFrame({"a": [1, 1, 1, 0, 0, 0, 0, 0], "b": [1.0, 2, 3, 4, 5, 6, 7, np.nan]})
    top = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    t = ev.crosstab_topk(df, top, ["a", "b"]).set_index("feature")
    assert t.loc["a", "mean_top"] == 1 and t.loc["a", "mean_rest"] == 0
    assert t.loc["b", "difference"] == pytest.approx(2 - 5.5)
    sc = pd.DataFrame({"label": [1, 0, 1, 0, 1], "rank": [1, 2, 3, 4, 5]})
    miss = ev.missed_cases(sc, np.array([1, 1, 0, 0, 0], bool))
    assert miss["events"] == 3 and miss["caught"] == 1 and miss["missed"] == 2
    assert miss["missed_rank_median"] == 4


def test_stability_and_subsets():
    rng = np.random.default_rng(3)
    df = pd.DataFrame(
        {
            "child_id": [f"c{i}" for i in range(200)],
            "score": rng.random(200),
            "label": (rng.random(200) < 0.2).astype(int),
            "district": ["N"] * 150 + ["S"] * 50,
        }
    )
    df["same"] = df["score"] * 2
    st = ev.list_stability(df, "score", ["same"], 20, seed=0)
    assert st.loc[0, "jaccard_top_k"] == 1.0 and st.loc[0, "spearman"] == pytest.approx(1.0)
    sub = ev.subset_precision(df, "district", ["score"], 20)
    assert sub.set_index("district")["k_group"].to_dict() == {"N": 15, "S": 5}
    yo = ev.year_to_year_overlap(df, df, "score", 20, 0)
    assert yo["jaccard"] == 1.0 and yo["overlap"] == 20


def test_plots_draw_what_they_say():
    import matplotlib

    matplotlib.use("Agg")
    from helpers.reports.disclosure import Rules

    rules = Rules(threshold=9)
    folds, test = ev.temporal_splits(range(2017, 2023), 3)
    ax = ev.plot_splits(folds, test, range(2017, 2023))
    assert len(ax.get_yticklabels()) == len(folds) + 1 and "temporal" in ax.get_title()
    tab = pd.DataFrame(
        {"list": ["a", "b"], "value": [0.2, 0.01], "ci_low": [0.1, 0.0], "ci_high": [0.3, 0.05]}
    )
    ax = ev.plot_headline(tab, 100, rules)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert len(ax.patches) == 2  # one bar, one hatched band for the list with 1 hit
    curve = ev.precision_curve(Y, S, [1, 2, 4])
    ax = ev.plot_precision_curve({"m": curve}, 2, Rules(threshold=0, enabled=False))
    assert ax.get_lines()[0].get_label() == "m"
    ax = ev.plot_pr_curve({"m": (Y, S)}, Rules(threshold=0, enabled=False))
    assert "recall" in ax.get_xlabel()
    ax = ev.plot_calibration(ev.calibration_table(Y, S / 2, 2))
    assert len(ax.get_lines()) == 2
    per_year = pd.DataFrame(
        {
            "test_year": [2021, 2022],
            "precision_at_k": [0.2, 0.03],
            "precision_ci_low": [0.1, 0.0],
            "precision_ci_high": [0.3, 0.1],
            "expected_precision_at_k": [0.15, 0.1],
            "validation_precision_at_k": [0.12, 0.11],
        }
    )
    ax = ev.plot_backtest(per_year, 100, rules)
    labels = [h.get_label() for h in ax.get_legend_handles_labels()[0]]
    assert len(labels) == 3 and "backtest" in ax.get_title()
    realised = ax.containers[0].lines[0].get_xdata()  # the 3-hit year has no realised point
    assert list(realised) == [2021]


def test_sorted_ranking_matches_reference_metrics_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(5)
    y = (rng.random(3000) < 0.05).astype(int)
    s = np.round(y * 0.3 + rng.random(3000), 1)  # heavy ties
    r = ev.SortedRanking(y, s, prob=np.clip(s, 0, 1)).metrics(np.ones(3000), 100)
    assert r["precision_at_k"] == pytest.approx(ev.precision_at_k(y, s, 100, "mean"))
    assert r["recall_at_k"] == pytest.approx(ev.recall_at_k(y, s, 100, "mean"))
    assert r["lift_at_k"] == pytest.approx(ev.lift_at_k(y, s, 100, "mean"))
    assert r["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert r["average_precision"] == pytest.approx(average_precision_score(y, s))
    assert r["brier"] == pytest.approx(ev.brier(y, np.clip(s, 0, 1)))
    # integer count weights equal physically duplicating rows
    w = rng.integers(0, 3, 3000)
    idx = np.repeat(np.arange(3000), w)
    rw = ev.SortedRanking(y, s).metrics(w, 100)
    assert rw["precision_at_k"] == pytest.approx(ev.precision_at_k(y[idx], s[idx], 100, "mean"))
    assert rw["roc_auc"] == pytest.approx(roc_auc_score(y[idx], s[idx]))
    assert rw["average_precision"] == pytest.approx(average_precision_score(y[idx], s[idx]))


def test_count_text_suppresses_small_counts_for_running_text():
    assert ev.count_text(0, 9) == "0"
    assert ev.count_text(3, 9) == "<10"
    assert ev.count_text(9.0, 9) == "<10"
    assert ev.count_text(12, 9) == "12"
    assert ev.count_text(1234, 9) == "1,234"
    assert ev.count_text(4, threshold=None) == "4"


def test_report_tables_from_metrics():
    h = {"value": 0.2, "ci_low": 0.1, "ci_high": 0.3}
    one = {
        "precision_at_k": h,
        "recall_at_k": h,
        "lift_at_k": h,
        "average_precision": h,
        "roc_auc": h,
        "precision_worst": 0.1,
        "precision_best": 0.3,
        "recall_worst": 0.1,
        "recall_best": 0.4,
    }
    metrics = {
        "k": 100,
        "headline": {"model": one, "oracle": one},
        "comparisons": {"model_vs_yc_rule_score": {"value": 5.0, "ci_low": 1.0, "ci_high": 9.0}},
    }
    head = ev.headline_table(metrics)
    assert list(head["key"]) == ["model", "oracle"]
    assert ev.metrics_table(metrics).loc[0, "precision_at_k"] == "0.200 [0.100, 0.300]"
    comp = ev.comparison_table(metrics)
    assert comp.loc[0, "precision_difference"] == pytest.approx(0.05)
    assert "model better" in comp.loc[0, "judgement"]


def test_vectorised_replicates_equal_one_at_a_time():
    """metrics_many / hits_many over a block of weights equal metrics / hits per replicate."""
    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.1).astype(float)
    score = np.round(rng.normal(size=n), 1)  # ties
    prob = rng.random(n)
    r = ev.SortedRanking(y, score, prob)
    W = np.vstack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(5)])
    many, hits = r.metrics_many(W, 30), r.hits_many(W, 30)
    for i, w in enumerate(W):
        one = r.metrics(w, 30)
        for key, value in one.items():
            assert many[key][i] == value or (np.isnan(value) and np.isnan(many[key][i]))
        assert hits[i] == r.hits(w, 30)


def test_boot_weights_draw_the_same_resamples_in_any_block_size():
    a = list(ev.boot_weights(np.random.default_rng(1), [7, 5], 9, cells=12))
    b = list(ev.boot_weights(np.random.default_rng(1), [7, 5], 9, cells=10**6))
    assert len(b) == 1 and len(a) > 1
    for j in range(2):
        np.testing.assert_array_equal(np.vstack([blk[j] for blk in a]), b[0][j])
    assert (b[0][0].sum(axis=1) == 7).all()


def _hits_all_groups(r, W, k):
    """hits_many over every tie group (the reference the leading-groups shortcut must equal)."""
    w = np.asarray(W, dtype=float)[:, r.order]
    gw = np.add.reduceat(w, r.starts, axis=1)
    pw = np.add.reduceat(w * r.y, r.starts, axis=1)
    cum_w = np.cumsum(gw, axis=1)
    kk, g = r._cut(cum_w, k)
    rows = np.arange(len(W))
    before_p = np.array([float(pw[i, : g[i]].sum()) for i in rows])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(gw[rows, g] != 0, pw[rows, g] / gw[rows, g], 0.0)
    return np.where(kk > 0, before_p + (kk - cum_w[rows, g] + gw[rows, g]) * share, 0.0)


@pytest.mark.parametrize("n", [3, 40, 700, 5000])
@pytest.mark.parametrize("kind", ["distinct", "rounded", "binary", "constant"])
def test_leading_groups_give_exactly_the_figures_of_all_groups(n, kind):
    """hits_many / precision_many read only the tie groups up to the k-th place: bit for bit
    the numbers over every group, for labels and true probabilities, with huge tie groups."""
    rng = np.random.default_rng(n)
    score = {
        "distinct": rng.normal(size=n),
        "rounded": np.round(rng.normal(size=n), 1),
        "binary": rng.integers(0, 2, n).astype(float),
        "constant": np.zeros(n),
    }[kind]
    y = (rng.random(n) < 0.05).astype(float)
    W = np.vstack(
        [np.ones(n)] + [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(9)]
    )
    for k in (1, 30, 100, 2 * n):
        for labels in (y, rng.random(n) * 0.1):
            r = ev.SortedRanking(labels, score)
            np.testing.assert_array_equal(r.hits_many(W, k), _hits_all_groups(r, W, k))
        r = ev.SortedRanking(y, score)
        np.testing.assert_array_equal(
            r.precision_many(W, k), r.metrics_many(W, k)["precision_at_k"]
        )
