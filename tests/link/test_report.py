"""The linkage-quality section of report 01 (helpers.link.report)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd

from helpers.config import load_config
from helpers.link import report as R
from helpers.link.evaluate import probability_estimates
from helpers.reports.api import rules

EDGES = list(range(-4, 11, 2))  # 7 bins


def table_report(truth: bool = True) -> dict:
    r = {
        "rows": 120,
        "auto": 100,
        "clerical": 5,
        "unmatched": 15,
        "clerical_records_pending": 12,
        "thresholds": {"accept_weight": 6.6, "clerical_weight": 0.0},
        "best_weight_histogram": {"edges": EDGES, "counts": [0, 3, 12, 0, 4, 50, 51]},
        "estimates": {"est_precision": 0.998, "est_recall": 0.97},
    }
    if truth:
        r["truth"] = {
            "auto_precision": 0.97,
            "auto_recall": 0.95,
            "rows_person_in_registry": 110,
            "twins_cross_linked": 0,
        }
    return r


def test_summary_table_adds_up():
    t = R.summary_table({"tables": {"src": table_report()}})
    row = t.frame.iloc[0]
    assert row["rows"] == row["auto"] + row["clerical"] + row["unmatched"]
    assert row["clerical_workload"] == 12 and "clerical_workload" in t.counts


def test_quality_table_hides_a_figure_with_a_small_error_count():
    t = R.quality_table({"tables": {"src": table_report()}}, synthetic=True)
    row = t.frame.iloc[0]
    assert row["wrong_links"] == 3 and row["missed"] == round(110 - 0.95 * 110)
    assert t.derived == {"precision": ["wrong_links"], "recall": ["missed"]}
    assert "wrong_links" in t.counts and "missed" in t.counts


def test_quality_table_on_real_data_shows_labelled_estimates_only():
    t = R.quality_table({"tables": {"src": table_report(truth=False)}}, synthetic=False)
    assert "推定" in t.caption and "wrong_links" not in t.frame
    assert t.frame.iloc[0]["precision"] == 0.998 and "estimate" in t.frame.iloc[0]["basis"]
    # a synthetic report read in real-data mode ignores the truth
    assert "wrong_links" not in R.quality_table({"tables": {"s": table_report()}}, False).frame


def test_histogram_hatches_small_bars_and_draws_both_thresholds():
    cfg = load_config()
    ax = R.weight_histogram(table_report(), rules(cfg))
    bars = [p for p in ax.patches if p.get_height() > 0]
    hatched = [p for p in bars if p.get_hatch()]
    assert len(hatched) == 2  # the bins of 3 and 4 records
    assert all(p.get_height() == rules(cfg).threshold + 1 for p in hatched)
    assert sorted(round(p.get_height()) for p in bars if not p.get_hatch()) == [12, 50, 51]
    assert sorted(line.get_xdata()[0] for line in ax.lines) == [0.0, 6.6]
    assert not ax.texts  # no values printed


def test_histogram_figure_has_one_axes_per_source():
    fig = R.histogram_figure(
        {"tables": {"a": table_report(), "b": table_report()}}, rules(load_config())
    )
    assert len(fig.axes) == 2


def test_probability_estimates_by_hand():
    res = pd.DataFrame(
        {
            "decision": ["auto", "auto", "unmatched", "unmatched"],
            "match_probability": [1.0, 0.98, 0.5, np.nan],
        }
    )
    est = probability_estimates(res)
    assert est["est_precision"] == 0.99
    assert est["est_recall"] == round(1.98 / 2.48, 5)
    assert probability_estimates(res.iloc[2:])["est_precision"] is None


def test_unmatched_text_says_unknown_not_zero():
    text = R.unmatched_text({"tables": {"school_guidance": {}}})
    assert text.startswith("未突合") and "NaN" in text and "not zero" in text
