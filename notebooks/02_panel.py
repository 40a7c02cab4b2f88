# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Mimamori (.venv)
#     language: python
#     name: mimamori
# ---

# %% tags=["parameters"]
profile = ""  # config profile; empty: MIMAMORI_PROFILE (make exports it) or none
data_dir = ""  # empty: from config (env MIMAMORI_DATA)
config_dir = ""  # empty: config/
n_factors = 3  # factors for the young-carer item analysis
corr_threshold = 0.5  # |r| at which two items count as redundant

# %%
import json

import pandas as pd

from helpers.panel import features as F
from helpers.panel import report as PR
from helpers.paths import paths
from helpers.reports.api import (
    close_report,
    open_report,
    rules,
    set_headline,
    show,
    show_figure,
    show_table,
)

cfg = open_report(
    "分析用パネル（Child x fiscal-year panel and features）",
    profile=profile,
    data_dir=data_dir,
    config_dir=config_dir,
    params={
        "profile": profile,
        "data_dir": data_dir,
        "config_dir": config_dir,
        "n_factors": n_factors,
        "corr_threshold": corr_threshold,
    },
)
P = paths(cfg)
panel = pd.read_parquet(P.panel)
catalogue = pd.read_csv(P.feature_catalogue)
leakage = json.loads(P.leakage_check.read_text(encoding="utf-8"))
targets = cfg.run.targets
R = rules(cfg)

# %% [markdown]
# One row per child and fiscal year (年度). Features use only records dated **before** 1 April
# of the year; labels come from the year that starts on that date (lesson 5: an event after
# the difficulty is not a predictor). Children already known before the as-of date are
# flagged (`known_*`) so lists and models can leave them out.
#
# ## パネルの規模と目的変数（Panel size and labels per fiscal year）

# %%
size = PR.size_table(panel, targets)
n_features = int((catalogue["role"] == "feature").sum())
set_headline(
    f"{len(panel):,} 児童年（child-years）, {size.frame['fiscal_year'].nunique()} 年度, "
    f"特徴量 {n_features} 個（features）; リーク検査 "
    f"{'合格（passed）' if leakage['passed'] else '不合格（FAILED）'}",
    cfg,
)
show(size, cfg)

# %% [markdown]
# ## 特徴量カタログ（Feature catalogue）
# Generated from the registry in `helpers.panel.features`; models use exactly the `role = feature`
# columns. `missing_treatment` says what a blank means — nothing is silently filled with 0.

# %%
show_table(
    catalogue[["name", "label_ja", "source_tables", "window", "type", "role", "missing_treatment"]],
    "特徴量カタログ（feature catalogue）",
    cfg,
    max_rows=len(catalogue),
)
treatments = pd.DataFrame(
    sorted(F.MISSING_TREATMENTS.items()), columns=["missing_treatment", "意味（meaning）"]
)
show_table(treatments, "欠損の扱い（missing-value treatments）", cfg)

# %% [markdown]
# ## 欠損の割合（Share missing, latest fiscal year）

# %%
missingness = pd.read_csv(P.missingness)
latest = missingness[missingness["fiscal_year"] == missingness["fiscal_year"].max()]
latest = latest[latest["share_missing"] > 0].sort_values("share_missing", ascending=False)
show_table(
    latest[["name", "share_missing", "rows", "missing_treatment"]],
    "欠損のある列（columns with missing values, latest year）",
    cfg,
    max_rows=40,
    shares={"share_missing": "rows"},
)

# %% [markdown]
# ## 特徴量の該当割合の推移（Prevalence of binary features over time）
# Counts of 1 to 9 children are suppressed together with their rates.

# %%
prevalence = PR.feature_prevalence(panel, catalogue)
show(PR.prevalence_table(prevalence, catalogue), cfg)
ax = PR.plot_item_prevalence(prevalence, F.YC_ITEM_NAMES, R)
ax.set_title("ヤングケアラー12項目の該当割合（young-carer items）")
show_figure(ax, "ヤングケアラー12項目の該当割合の推移（young-carer item prevalence）")

# %% [markdown]
# ## ヤングケアラー12項目の相関と因子構造（Item correlations and factor structure）
# Lesson 1: correlated rule items count one trait several times. Pairs with |r| at or above
# the threshold, or loading mainly on the same factor, are listed with the rarer item
# suggested for removal. The analyst decides; the list is a prompt, not a rule.

# %%
latest_year = panel[panel["fiscal_year"] == panel["fiscal_year"].max()]
redundancy = PR.item_redundancy(
    latest_year, n_factors=n_factors, corr_threshold=corr_threshold, seed=cfg.run.seed
)
ax = PR.plot_correlation(
    redundancy["correlation"],
    labels=dict(zip(catalogue["name"], catalogue["label_ja"], strict=True)),
)
show_figure(ax, "12項目の相関行列（correlation matrix, latest year）")
show_table(
    redundancy["loadings"].round(2).reset_index(names="item"),
    "因子負荷量（factor loadings, varimax）",
    cfg,
)
show(PR.redundant_pairs_table(redundancy["redundant_pairs"]), cfg)

# %% [markdown]
# ## リーク検査（Leakage check）
# One fiscal year is rebuilt from the mart cut at its as-of date (records on or after it
# removed, later end dates blanked); every feature must come out identical. Tables whose
# schema role is `post_outcome` (e.g. 要対協 case registration) may only mark a child as known.

# %%
show(PR.leakage_table(leakage), cfg)

# %%
close_report(cfg, inputs=[P.panel, P.feature_catalogue, P.leakage_check])
