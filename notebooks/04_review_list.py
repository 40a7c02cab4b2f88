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
# # 見守りリストと確認標本（Review list and blinded sample）
# 職員が確認できる人数（capacity）で区切ったリストと、リストの精度を確かめるための盲検標本
# （高スコア群と低スコア群を混ぜ、学校には群を知らせない）の概要。個人は表示しない。

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
from helpers.review.pages import ListReport

cfg = open_report(
    "見守りリストと確認標本（Review list and blinded sample）",
    profile=profile,
    data_dir=data_dir,
    config_dir=config_dir,
    params={"profile": profile, "data_dir": data_dir, "config_dir": config_dir, "target": target},
)
rep = ListReport.load(cfg, target)
set_headline(rep.headline(), cfg)

# %% [markdown]
# スコアは支援の必要性を判断する人の補助であり、判断そのものではない。リストの長さは確率の閾値では
# なく、職員が確認できる人数で決める。同点は乱数（seed 固定）で順位を付けた。順位を付けるのは
# 対象（eligible population: モデルの学習・評価と同じ定義）の児童だけである。
# *The score supports and never replaces a human assessment; the list length is the staff's
# capacity, ties are broken by a seeded random number; only the eligible population is ranked.*

# %%
show_text(rep.population_text(), cfg)
show(rep.scope(), cfg)
show(rep.exclusions_table(), cfg)

# %% [markdown]
# ## リストの内訳（capacity list by school and age band）

# %%
show(rep.by_school(), cfg)
show(rep.by_age(), cfg)

# %% [markdown]
# ## 盲検の設計（how the blinded sample is drawn）
# 高スコア群は順位の上位から、低スコア群は順位の下位から、高スコア群と同じ学校・学年の層の中で
# 抽出する。学校に渡すシート（仮名ID・学校・学年）から群が分からないことを、分類器で確かめる。
# 群ごとの内訳は分析者用の控えにだけ残し、この報告には載せない。

# %%
show_text(rep.blind_text(), cfg)

# %% [markdown]
# ## 理由コード（reason codes in the list）
# 各児童の上位3つの理由。住民から「どの項目が使われたか」を問われたときの説明の基礎になる。

# %%
show(rep.reasons(), cfg)

# %% [markdown]
# ## 検出力分析（power analysis, before the review）
# 結果の報告で使う Fisher の正確検定の検出力で必要な確認数を求め（正規近似は参考として併記）、
# 計画した標本（および回答見込み）で検出できる最小の差を示す。確認数が少ないと比較は弱い。

# %%
show_text(rep.power_text(), cfg)
show(rep.power_table(), cfg)
show_figure(rep.power_figure(), "計画標本の検出力（power of the planned sample）")

# %%
close_report(cfg, inputs=rep.inputs)
