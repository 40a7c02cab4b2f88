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
# 要支援の児童に多い項目、過去の回との比較を示す。返送がまだなら、送付した内容を示す。

# %% tags=["parameters"]
profile = ""  # config profile; empty: MIMAMORI_PROFILE (make exports it) or none
data_dir = ""  # empty: from config (env MIMAMORI_DATA)
config_dir = ""  # empty: config/
target = ""  # empty: config review.target

# %%
from helpers.reports.api import (
    close_report,
    open_report,
    set_headline,
    show,
    show_figure,
    show_text,
)
from helpers.review.pages import ResultsReport

cfg = open_report(
    "確認結果（Review results）",
    profile=profile,
    data_dir=data_dir,
    config_dir=config_dir,
    params={"profile": profile, "data_dir": data_dir, "config_dir": config_dir, "target": target},
)
rep = ResultsReport.load(cfg, target)
set_headline(rep.awaiting_headline() if rep.awaiting else rep.headline(), cfg)

# %% [markdown]
# **要支援の定義（definition）**：学校の回答で「家庭状況で気になること」が 有、または「本人からの訴え」が 有。
# 「その他」のみの記入は数えない。スコアは人の判断の補助であり、要支援かどうかを決めるのは人である。
# *Needs support = 有 to either question; the score never labels a child on its own.*
#
# 群は学校に知らせていない（盲検）。返送されなかった児童は分母に入れず、未回答として数える。
# 95%信頼区間は Wilson（または設定により正確法）。

# %%
if rep.awaiting:
    show(rep.sent(), cfg)
    show_text(rep.awaiting_text(), cfg)
else:
    show_text(rep.simulated_text(), cfg)
    show(rep.arm_rates(), cfg)

# %% [markdown]
# ## 高スコア群と低スコア群の比較（Fisher's exact test）
# 2×2 表（群 × 要支援の有無）に対する Fisher の正確検定。少数では差があっても有意になりにくい
# （リスト作成時の検出力分析を参照）。ランダム選択との比較は価値を過大に見せるので行わない。

# %%
if not rep.awaiting:
    show(rep.fisher(), cfg)

# %% [markdown]
# ## 要支援の児童に多い項目（item prevalence: needs support vs not）

# %%
if not rep.awaiting:
    show(rep.prevalence(), cfg)

# %% [markdown]
# ## 回の比較（rounds compared）
# 過去の回は設定 `review.earlier_rounds`（参照自治体の数値）。今回は同じ条件で確認した結果。

# %%
if not rep.awaiting:
    show(rep.rounds(), cfg)
    show_figure(
        rep.rounds_figure(),
        rep.label("回ごと・群ごとの要支援率と95%信頼区間（rate and 95% CI per round and arm）"),
    )

# %%
close_report(cfg, inputs=rep.inputs)
