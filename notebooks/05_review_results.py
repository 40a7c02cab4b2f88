# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Mimamori (.venv)
#     language: python
#     name: mimamori
# ---

# %% [markdown]
# # 確認結果（Review results: does the list find children who need support?）
# 学校から返送された盲検の確認結果を群（高スコア・低スコア）に戻し、要支援率、Fisher の正確検定、
# 要支援の児童に多い項目、過去の回との比較を示す。

# %% tags=["parameters"]
profile = ""      # config profile; empty: MIMAMORI_PROFILE (make exports it) or none
data_dir = ""         # empty: from config (env MIMAMORI_DATA)
config_dir = ""       # empty: config/
target = ""           # empty: config review.target

# %%
import json

import pandas as pd

from helpers.reports.api import close_report, open_report, set_headline, show_figure, show_table
from helpers.review.stage import review_paths
from helpers.review.report import (
    ARM_COUNTS,
    ARM_RATES,
    PREVALENCE_COUNTS,
    PREVALENCE_RATES,
    ROUND_COUNTS,
    ROUND_RATES,
    arm_rates_display,
    plot_hit_rates,
    prevalence_display,
    results_headline,
    rounds_display,
)

cfg = open_report("確認結果（Review results）", profile=profile, data_dir=data_dir,
                  config_dir=config_dir,
                  params={"profile": profile, "data_dir": data_dir, "config_dir": config_dir,
                          "target": target})
paths = review_paths(cfg, target)
results = json.loads(paths["results"].read_text(encoding="utf-8"))
rates = pd.read_csv(paths["arm_rates"])
rounds = pd.read_csv(paths["rounds"])
prevalence = pd.read_csv(paths["item_prevalence"])
threshold = (int(cfg["reports"].get("small_cell_threshold", 9))
             if cfg["reports"].get("suppress_small_cells", True) else None)
set_headline(results_headline(rates, results["fisher_p_two_sided"], threshold), cfg)

# %% [markdown]
# **要支援の定義（definition）**：学校の回答で「家庭状況で気になること」が 有、または「本人からの訴え」が 有。
# 「その他」のみの記入は数えない。スコアは人の判断の補助であり、要支援かどうかを決めるのは人である。
# *Needs support = 有 to either question; the score never labels a child on its own.*
#
# 群は学校に知らせていない（盲検）。返送されなかった児童は分母に入れず、未回答として数える。
# 95%信頼区間は Wilson（または設定により正確法）。

# %%
show_table(arm_rates_display(rates, threshold), "群別の要支援率（needs-support rate by arm）", cfg,
           counts=ARM_COUNTS, rates=ARM_RATES)

# %% [markdown]
# ## 高スコア群と低スコア群の比較（Fisher's exact test）
# 2×2 表（群 × 要支援の有無）に対する Fisher の正確検定。少数では差があっても有意になりにくい
# （リスト作成時の検出力分析を参照）。ランダム選択との比較は価値を過大に見せるので行わない。

# %%
small = threshold is not None and any(
    1 <= int(v) <= threshold for v in rates[["reviewed", "positive"]].to_numpy().ravel())
fisher = pd.DataFrame({
    "検定（test）": ["両側（two-sided）", "片側：高 > 低（one-sided, high > low）"],
    "p値（p-value）": ["*" if small else f"{results['fisher_p_two_sided']:.3f}",
                     "*" if small else f"{results['fisher_p_greater']:.3f}"],
})
show_table(fisher, "Fisher の正確検定（high vs low）", cfg)

# %% [markdown]
# ## 要支援の児童に多い項目（item prevalence: needs support vs not）

# %%
if len(prevalence):
    show_table(prevalence_display(prevalence, threshold),
               "項目の該当率（share with each item; unknown values left out of the denominator）",
               cfg, counts=PREVALENCE_COUNTS, rates=PREVALENCE_RATES)
else:
    print("比較する項目がない（no panel items configured for this target）")

# %% [markdown]
# ## 回の比較（rounds compared）
# 過去の回は設定 `review.earlier_rounds`（参照自治体の数値）。今回は同じ条件で確認した結果。

# %%
show_table(rounds_display(rounds, threshold), "回ごとの要支援率（needs-support rate per round）", cfg,
           counts=ROUND_COUNTS, rates=ROUND_RATES)
ax = plot_hit_rates(rounds, threshold)
show_figure(ax, "回ごと・群ごとの要支援率と95%信頼区間（rate and 95% CI per round and arm）")

# %%
close_report(cfg, inputs=[paths["results"], paths["arm_rates"], paths["rounds"], paths["item_prevalence"]])
