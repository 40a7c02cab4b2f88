"""Report 07's tables: what changed, the paired headline, lists, calibration, fairness, and
nothing that shows or gives away a count of 1-9; the command line's one-line errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from helpers.__main__ import main as cli
from helpers.paths import paths
from helpers.runs import compare as C
from helpers.runs import report as R
from helpers.runs import stage as S
from helpers.runs.archive import archive_run

from .conftest import population, scores_for, write_models_run

T0 = datetime(2024, 4, 1, 9, 30, tzinfo=UTC)


def archive(cfg, scores, minutes=0, target="young_carer", **kw):
    write_models_run(cfg, target, scores, **kw)
    return archive_run(cfg, target, now=T0 + timedelta(minutes=minutes))


@pytest.fixture
def pair(cfg):
    pop = population(n=400, prevalence=0.1)
    a = archive(cfg, scores_for(pop, 1.0, 1))
    cfg2 = cfg.with_overrides({"models": {"tuning": {"n_trials": 5}}})
    b = archive(cfg2, scores_for(pop, 1.5, 2), minutes=1, features=["f_a", "f_b", "f_d"])
    return C.compare_runs(cfg, a, b, "young_carer")


def test_what_changed(pair):
    s = R.settings_diff(pair).frame
    assert s.values.tolist() == [["models.tuning.n_trials", "3", "5"]]
    f = R.feature_diff(pair).frame
    assert sorted(zip(f["特徴量（feature）"], f["変化（change）"], strict=True)) == [
        ("f_c", "削除（removed）"),
        ("f_d", "追加（added）"),
    ]
    assert "特徴 f_c" in f["説明（label）"].tolist()
    t = R.tuning_diff(pair).frame.set_index("パラメータ（parameter）")
    assert t.loc["lightgbm.n_planned", "違い（differs）"] == "●"
    assert t.loc["lightgbm.params.num_leaves", "違い（differs）"] == ""


def test_no_differences_say_so(cfg):
    run = archive(cfg, scores_for(population(), 1.0, 1))
    cmp = C.compare_runs(cfg, run, run, "young_carer")
    assert R.settings_diff(cmp).frame.iloc[0, 0] == R.NONE_ROW
    assert R.feature_diff(cmp).frame.iloc[0, 0] == R.NONE_ROW
    assert "差 0" in R.headline_text(cmp) and "no detectable difference" in R.headline_text(cmp)


def test_headline_table_has_every_year_and_the_pooled_sum(pair):
    t = R.headline_table(pair)
    f = t.frame
    assert f["年度（FY）"].tolist() == ["FY2021", "FY2022", "FY2023", "合計（pooled）"]
    years = f.iloc[:3]
    pooled = f.iloc[3]
    if years["的中 新（hits new）"].notna().all():
        assert pooled["的中 新（hits new）"] == years["的中 新（hits new）"].sum()
    assert pooled["差（difference, new − base）"] == pytest.approx(pair.paired.pooled["difference"])
    assert set(t.counts) <= set(f.columns) and set(t.rates) <= set(f.columns)
    assert "95% CI" in R.verdict_text(pair)


def test_complementary_suppression_when_one_cell_is_small(cfg, pair):
    frame = pd.DataFrame(
        {"g": ["a", "a", "b", "b"], "n": [12.0, 4.0, 20.0, 15.0], "m": [0.0, 30.0, 3.0, 0.0]}
    )
    out = R.protect_groups(frame, ["n", "m"], "g", pair)
    assert out["n"].tolist()[:2] == [pytest.approx(np.nan, nan_ok=True), 4.0]  # 12 hidden
    assert out["n"].tolist()[2:] == [20.0, 15.0]  # no small cell in group b
    assert out["m"].tolist()[2:] == [3.0, 0.0]  # zeros stay; the small one left to show_table
    off = pair.cfg.with_overrides({"reports": {"suppress_small_cells": False}})
    pair_off = C.Comparison(
        off, pair.target, pair.base, pair.new, pair.joined, pair.paired, pair.verdict, pair.alpha
    )
    assert R.protect_groups(frame, ["n"], "g", pair_off)["n"].tolist() == [12.0, 4.0, 20.0, 15.0]


def test_small_hits_hide_their_precision_and_a_one_sided_difference(cfg):
    pop = population(n=300, prevalence=0.02, seed=4)
    a = archive(cfg, scores_for(pop, 0.0, 1))
    b = archive(cfg, scores_for(pop, 6.0, 2), minutes=1)
    cmp = C.compare_runs(cfg, a, b, "young_carer")
    f = R.headline_table(cmp).frame
    assert f["的中 基準（hits base）"].between(1, 9).any()  # the case this test is about
    for _, row in f.iterrows():
        for hits, prec in (
            ("的中 基準（hits base）", "precision 基準（base）"),
            ("的中 新（hits new）", "precision 新（new）"),
        ):
            if pd.isna(row[hits]) or 1 <= row[hits] <= 9:
                assert pd.isna(row[prec])
        small = [1 <= v <= 9 for v in (row["的中 基準（hits base）"], row["的中 新（hits new）"])]
        if small[0] != small[1]:
            assert pd.isna(row["差（difference, new − base）"])


def test_lists_overlap_movers_and_fairness(pair):
    o = R.overlap_table(pair).frame
    assert o["年度（FY）"].tolist() == ["FY2021", "FY2022", "FY2023"]
    assert (o["リストの長さ（list length k）"] == pair.k).all()
    assert (o["入った（entered）"] == o["外れた（left）"]).all()  # both lists are k long
    shown = o.dropna(subset=["Jaccard"])
    k = pair.k
    assert np.allclose(
        shown["Jaccard"], (k - shown["入った（entered）"]) / (k + shown["入った（entered）"])
    )
    m = R.movers_by_reason(pair).frame
    if m["入った（entered）"].notna().all():
        assert m["入った（entered）"].sum() == o["入った（entered）"].sum()
    fair = R.fairness_table(pair).frame
    assert set(fair["属性（attribute）"]) == {"sex", "nationality", "single_parent"}
    sex = fair[fair["属性（attribute）"] == "sex"]
    if sex["選ばれた 新（listed new）"].notna().all():
        assert sex["選ばれた 新（listed new）"].sum() == 3 * k


def test_calibration_and_expected_precision(pair):
    c = R.calibration_table(pair).frame.set_index("指標（measure）")
    assert c.loc["O/E [95% CI]（models stage）", "基準（base）"] == "1.00 [0.80, 1.20]"
    assert float(c.loc["Brier スコア（lower is better）", "基準（base）"]) > 0
    b = R.backtest_table(pair).frame
    assert b["年度（FY）"].tolist()[-1] == "合計（pooled）"
    assert b["変化（change）"].abs().max() == 0


def test_backtest_table_absent_without_backtest(cfg):
    pop = population(years=(2023,))
    a = archive(cfg, scores_for(pop, 1.0, 1), backtest=False)
    cmp = C.compare_runs(cfg, a, a, "young_carer")
    assert R.backtest_table(cmp) is None
    assert R.headline_table(cmp).frame["年度（FY）"].tolist() == ["FY2023"]


def test_plot_returns_the_axes(pair):
    import matplotlib

    from helpers.reports.plotting import use_japanese_font

    matplotlib.use("Agg")
    use_japanese_font()
    ax = R.plot_difference(pair)
    assert ax.get_xlabel().startswith("的中数の差")


def test_compare_records_what_report_07_shows_by_default(pair):
    S.record_comparison(pair.cfg, pair)
    req = S.latest_request(pair.cfg)
    assert req == {"base": pair.base.run_id, "new": pair.new.run_id, "target": "young_carer"}
    again = S.load_comparison(pair.cfg)
    assert again.paired.pooled == pair.paired.pooled
    summary = json.loads(
        paths(pair.cfg).comparison(pair.base.run_id, pair.new.run_id).read_text(encoding="utf-8")
    )
    assert summary["verdict"] == pair.verdict


def test_cli_lists_compares_and_fails_in_one_line(cfg, pair, capsys):
    base = ["--profile", "tiny", "--data-dir", str(paths(cfg).data)]
    assert cli([*base, "runs", "list"]) == 0
    out = capsys.readouterr().out
    assert pair.base.run_id in out and "models.tuning.n_trials: 3 → 5" in out
    assert (
        cli(
            [
                *base,
                "runs",
                "compare",
                "previous",
                "latest",
                "--target",
                "young_carer",
                "--no-render",
            ]
        )
        == 0
    )
    assert pair.verdict in capsys.readouterr().out
    assert cli([*base, "runs", "compare", "nosuch", "latest", "--no-render"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimamori runs: error: unknown run id 'nosuch'") and "\n" not in err


def test_a_difference_of_two_hidden_counts_is_shown_only_while_it_pins_neither(pair):
    shown = R.difference_shown
    assert shown(3, 3, 0, pair)  # a run against itself: always 0
    assert shown(2, 6, 4, pair)  # each hidden count still has 9 - 4 = 5 possible values
    assert not shown(1, 9, 8, pair)  # 9 - 8 = 1 value: both counts given away
    assert not shown(5, 14, 9, pair)  # 14 shown, so the hidden 5 = 14 - 9
    assert not shown(0, 4, 4, pair)  # 0 is shown: the 4 would be given away
    assert shown(12, 30, 18, pair)  # nothing hidden
