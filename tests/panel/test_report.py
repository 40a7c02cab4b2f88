"""Report 02's tables and plots (helpers.panel.report): what they count and what they draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers.panel import report as PR  # noqa: E402
from helpers.panel import stage as P  # noqa: E402
from helpers.panel.features import YC_ITEM_NAMES  # noqa: E402
from helpers.reports.disclosure import Rules  # noqa: E402

from .test_panel import fixture_cfg, make_fixture_mart  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def synthetic_items(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data = {name: (rng.random(n) < 0.2).astype(float) for name in YC_ITEM_NAMES}
    # two items that measure one trait: the second is the first with 3% noise
    base = (rng.random(n) < 0.3).astype(float)
    flip = rng.random(n) < 0.03
    data["yc_indep_support_ever"] = base
    data["yc_member_indep_support"] = np.where(flip, 1 - base, base) * (rng.random(n) < 0.9)
    return pd.DataFrame(data)


def test_item_redundancy_names_the_duplicated_trait_and_not_the_rest():
    result = PR.item_redundancy(synthetic_items(), n_factors=3, corr_threshold=0.5, seed=1)
    pairs = result["redundant_pairs"]
    flagged = {frozenset((a, b)) for a, b in zip(pairs["item_a"], pairs["item_b"], strict=True)}
    assert frozenset(("yc_indep_support_ever", "yc_member_indep_support")) in flagged
    assert len(flagged) == 1
    assert pairs["suggest_drop"].iloc[0] == "yc_member_indep_support"  # the rarer one
    assert result["correlation"].shape == (12, 12)
    assert result["loadings"].shape[0] == 12
    again = PR.item_redundancy(synthetic_items(), n_factors=3, corr_threshold=0.5, seed=1)
    pd.testing.assert_frame_equal(result["loadings"], again["loadings"])


def test_prevalence_and_size_tables():
    cfg = fixture_cfg()
    pnl, cat = P.build_panel(make_fixture_mart(), cfg)
    size = PR.panel_size_table(pnl, cfg.run.targets)
    assert size["child_years"].sum() == len(pnl)
    assert size.loc[size["fiscal_year"] == 2021, "label_physical_abuse_positive"].item() == 1
    prev = PR.feature_prevalence(pnl, cat, ["yc_public_assistance"])
    p22 = prev[prev["fiscal_year"] == 2022].iloc[0]
    fy = pnl[pnl["fiscal_year"] == 2022]["yc_public_assistance"]
    assert p22["positive"] == (fy == 1).sum() and p22["known"] == fy.notna().sum()
    t = PR.prevalence_table(prev, cat)
    assert {"n_2022", "p_2022", "label_ja"} <= set(t.frame.columns)
    assert t.rates["p_2022"] == "n_2022" and "n_2022" in t.counts
    st = PR.size_table(pnl, cfg.run.targets)
    assert "fiscal_year" not in st.counts and "child_years" in st.counts


def test_item_prevalence_plot_leaves_out_points_on_small_counts():
    prev = pd.DataFrame(
        {
            "name": ["a"] * 3 + ["b"] * 3,
            "fiscal_year": [2021, 2022, 2023] * 2,
            "known": [500] * 6,
            "positive": [50, 4, 60, 0, 30, 40],
            "prevalence": [0.1, 0.008, 0.12, 0.0, 0.06, 0.08],
        }
    )
    ax = PR.plot_item_prevalence(prev, ["a", "b"], Rules(9))
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["a", "b"]
    y_a = lines[0].get_ydata()
    assert np.isnan(y_a[1]) and y_a[0] == pytest.approx(0.1)  # 4 positives: not drawn
    assert not np.isnan(lines[1].get_ydata()).any()  # zero is shown
    assert ax.get_xlabel().startswith("年度") and ax.get_ylabel().startswith("該当割合")
    shown = PR.plot_item_prevalence(prev, ["a"], Rules(9, enabled=False))
    assert not np.isnan(shown.get_lines()[0].get_ydata()).any()


def test_correlation_heat_map_writes_every_value_with_labels():
    corr = synthetic_items().iloc[:, :3].corr()
    ax = PR.plot_correlation(corr, labels={corr.columns[0]: "項目A"})
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "項目A"
    assert len(ax.texts) == 9 and ax.texts[0].get_text() == "1.00"
    assert ax.get_title() == "項目間の相関（item correlations）"
    _, given = plt.subplots()
    assert PR.plot_correlation(corr, ax=given) is given
