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
profile = ""      # config profile; empty: MIMAMORI_PROFILE (make exports it) or none
data_dir = ""         # empty: from config (env MIMAMORI_DATA)
config_dir = ""       # empty: config/
target = ""           # empty: config review.target

# %%
import json

import pandas as pd

from helpers.reports.api import close_report, open_report, set_headline, show_figure, show_table
from helpers.review.stage import age_band, counts_by, reason_frequencies, review_paths
from helpers.review.report import list_headline, plot_power_curve

cfg = open_report("見守りリストと確認標本（Review list and blinded sample）", profile=profile,
                  data_dir=data_dir, config_dir=config_dir,
                  params={"profile": profile, "data_dir": data_dir, "config_dir": config_dir,
                          "target": target})
paths = review_paths(cfg, target)
summary = json.loads(paths["draw_summary"].read_text(encoding="utf-8"))
capacity = pd.read_parquet(paths["capacity_list"])
sample = pd.read_parquet(paths["sample"])
power = pd.read_csv(paths["power"])
exclusions = pd.read_csv(paths["exclusions"])
set_headline(list_headline(summary), cfg)

# %% [markdown]
# スコアは支援の必要性を判断する人の補助であり、判断そのものではない。リストの長さは確率の閾値では
# なく、職員が確認できる人数で決める。同点は乱数（seed 固定）で順位を付けた。
# *The score supports and never replaces a human assessment; the list length is the staff's
# capacity, ties are broken by a seeded random number.*

# %%
overview = pd.DataFrame({
    "項目（item）": ["スコア対象（scored）", "除外後の対象（eligible）", "リスト（capacity list）",
                   "確認標本：高スコア（sample, high）", "確認標本：低スコア（sample, low）"],
    "人数（children）": [summary["scored"], summary["eligible"], summary["capacity_listed"],
                       int((sample["arm"] == "high").sum()), int((sample["arm"] == "low").sum())],
})
show_table(overview, f"FY{summary['scoring_year']} 対象と除外（scope, target {summary['target']}）",
           cfg, counts=["人数（children）"])
show_table(exclusions.rename(columns={"exclusion": "除外理由（exclusion）", "children": "人数（children）"}),
           "除外（exclusions; each child counted under the first that applies）", cfg,
           counts=["人数（children）"])

# %% [markdown]
# ## リストの内訳（capacity list by school and age band）

# %%
by_school = counts_by(capacity, "school_code").rename(
    columns={"school_code": "学校（school）", "children": "人数（children）"})
show_table(by_school, "学校別（by school）", cfg, counts=["人数（children）"])
by_age = counts_by(capacity.assign(age_band=age_band(capacity["age"])), "age_band").rename(
    columns={"age_band": "年齢帯（age band）", "children": "人数（children）"})
show_table(by_age, "年齢帯別（by age band）", cfg, counts=["人数（children）"])
by_arm = counts_by(sample.assign(age_band=age_band(sample["age"])), ["arm", "age_band"]).rename(
    columns={"arm": "群（arm）", "age_band": "年齢帯（age band）", "children": "人数（children）"})
show_table(by_arm, "確認標本：群×年齢帯（blinded sample: arm x age band; analyst copy only）", cfg,
           counts=["人数（children）"], group_by=["群（arm）"])

# %% [markdown]
# ## 理由コード（reason codes in the list）
# 各児童の上位3つの理由。住民から「どの項目が使われたか」を問われたときの説明の基礎になる。

# %%
reasons = reason_frequencies(capacity).rename(columns={
    "reason": "理由（reason）", "as_first": "第1理由（first）", "any_of_three": "上位3理由のいずれか（any of 3）"})
show_table(reasons, "理由コードの頻度（reason-code frequencies）", cfg,
           counts=["第1理由（first）", "上位3理由のいずれか（any of 3）"])

# %% [markdown]
# ## 検出力分析（power analysis, before the review）
# 想定する要支援率（高スコア群・低スコア群）で、有意水準と検出力を満たすのに必要な確認数と、
# 計画した標本（および回答見込み）で検出できる最小の差。確認数が少ないと比較は弱い。

# %%
pw = summary["power_settings"]
power_shown = power.rename(columns={
    "scenario": "場面（scenario）", "n_high": "高スコア群（n high）", "n_low": "低スコア群（n low）",
    "power_normal": "検出力：正規近似（power, normal）", "power_fisher": "検出力：Fisher正確（power, exact）",
    "detectable_high_rate": "検出可能な高スコア群の率（detectable high rate）",
    "detectable_difference": "検出可能な差（detectable difference）"})
show_table(power_shown,
           f"想定 高 {pw.get('expected_high_rate')} / 低 {pw.get('expected_low_rate')}、"
           f"α={pw.get('alpha')}、検出力 {pw.get('power')}（planned reviews, not people）", cfg,
           formats={c: "{:.2f}" for c in power_shown.columns[3:]})
ax = plot_power_curve(float(pw.get("expected_low_rate", 0.05)), summary["n_high"], summary["n_low"],
                      float(pw.get("alpha", 0.05)), float(pw.get("power", 0.8)))
show_figure(ax, "計画標本の検出力（power of the planned sample）")

# %%
close_report(cfg, inputs=[paths["draw_summary"], paths["capacity_list"], paths["sample"], paths["power"]])
