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
target = "physical_abuse"  # one of run.targets
top_features = 15  # rows in the feature tables and the importance chart

# %%
from helpers.models.report import ModelReport
from helpers.reports.api import close_report, open_report, set_headline, show_figure, show_table

cfg = open_report(
    f"モデルと評価（Models and evaluation）: {target}",
    profile=profile,
    data_dir=data_dir,
    config_dir=config_dir,
    params={
        "profile": profile,
        "data_dir": data_dir,
        "config_dir": config_dir,
        "target": target,
        "top_features": top_features,
    },
)
rep = ModelReport.load(cfg, target, top_features)
k = rep.k

# %% [markdown]
# ## 要点：上位k人に真の事例が何人入るか（Headline: true cases in the top k）
# Staff can review only **k** children (the capacity). The question: does the model put more
# children who truly need support into those k places than the simple alternatives — the best
# single variable chosen on training years and the young-carer rule score — and how sure are
# we? The oracle (synthetic city only) ranks by the true probability: the ceiling.

# %%
set_headline(rep.headline_text(), cfg)
t = rep.headline()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
show_figure(rep.headline_figure(), f"precision@{k}（95% CI）")

# %%
t = rep.test_population()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
print(rep.notes_text())

# %% [markdown]
# ## 時系列による検証（Temporal validation）
# Each fold trains on fiscal years up to t−1 and validates on t; the final model trains on every
# year before the test year, which tuning never saw.

# %%
show_figure(rep.splits_figure(), "学習・検証・テスト年度（train / validate / test years）")
t = rep.folds()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %% [markdown]
# ## ハイパーパラメータの選択（Tuning for precision at capacity）
# Objective = mean validation precision@k − penalty × its standard deviation across years, so a
# candidate that is good on average but erratic is not chosen. Average precision beside it.

# %%
show_figure(rep.tuning_figure(), "候補ごとの平均と年度間のばらつき（every candidate）")
t = rep.chosen()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
print(rep.calibration_text())

# %% [markdown]
# ## テスト年度の全指標（All test-year metrics, 95% bootstrap CI）

# %%
t = rep.all_metrics()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
t = rep.comparisons()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
print(rep.oracle_text())

# %%
show_figure(
    rep.curves_figure(),
    "リスト長ごとの適合率と PR 曲線（precision vs k, capacity marked; PR curve）",
)
fig = rep.calibration_figure()
if fig is not None:
    show_figure(fig, "較正（calibration of the yearly probability, test year）")

# %% [markdown]
# ## 参照決定木のセグメント表（Reference decision tree: segments）
# Depth-3 entropy tree with the reference's strict leaf sizes, fitted on the training years.
# Risk ratio = the segment's rate / the base rate. Its scores are tied within a leaf.

# %%
t = rep.segments()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %% [markdown]
# ## 単一変数リスト（Single-variable lists, chosen on training years）

# %%
t = rep.single_variables()
if not t.empty:
    show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
t = rep.odds_ratios()
if not t.empty:
    show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %% [markdown]
# ## 上位k人とそれ以外の比較（Top k vs the rest）

# %%
t = rep.crosstab()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %% [markdown]
# ## 見逃した事例（Error analysis: true cases left out of the top k）

# %%
t = rep.missed()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
t = rep.missed_vs_caught()
if not t.empty:
    show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %% [markdown]
# ## リストの安定性（List stability）

# %%
t = rep.stability()
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
print(rep.year_to_year_text())

# %% [markdown]
# ## 地区別・属性別（Subsets and fairness）
# Within each subset the list is re-thresholded with its proportional share of the capacity.
# Fairness: selection rate, precision, FPR and FNR per group against the largest group; groups
# with too few true cases are flagged, not judged.

# %%
t = rep.subsets()
if not t.empty:
    show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
t = rep.fairness()
if not t.empty:
    show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %% [markdown]
# ## 説明（SHAP explanations of the LightGBM model）
# SHAP values are in **log-odds of the class-weighted model** (before calibration): they explain
# the ranking, item by item, not the probability. Reason codes are each child's top three
# positive contributions.

# %%
if rep.has_explanation:
    show_figure(rep.importance_figure(), "平均|SHAP|（global importance, log-odds）")
    show_figure(rep.beeswarm_figure(), "SHAP ビースウォーム（beeswarm）")
    show_figure(rep.dependence_figure(), "SHAP 依存プロット（dependence plots, top features）")

# %%
print(rep.reasons_text())
t = rep.reasons()
if not t.empty:
    show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %%
close_report(cfg, inputs=rep.inputs)
