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
from helpers.reports.api import (
    close_report,
    open_report,
    set_headline,
    show,
    show_figure,
    show_text,
)

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
# Staff can review only **k** children (the capacity), and only children of the target's
# **eligible population** (the ages and schools that will review them): every figure here is
# measured on them. Each of the last test years is ranked by a model tuned and trained only on
# the years before it (a rolling-origin backtest); the headline pools those years. On the
# synthetic city every precision is shown twice: realised hits, and hits *expected* under the
# true probabilities (noise-free); the oracle ranks by the true probability: the ceiling.

# %%
set_headline(rep.headline_text(), cfg)
show_text(rep.population_text(), cfg)
show(rep.lists(), cfg)
show_figure(rep.headline_figure(), f"{rep.years_text} 合算の precision@{k}（95% CI）")
show(rep.comparisons(), cfg)

# %% [markdown]
# ## 年度別（Backtest year by year）
# One test year carries a lot of luck: a year with more events than its true probabilities
# imply flatters every list. The validation-year column is what tuning saw for the chosen
# candidate; a test year far above it deserves suspicion rather than celebration.

# %%
show(rep.per_year(), cfg)
show_figure(rep.backtest_figure(), "年度別の適合率（realised, expected, oracle, validation）")
show(rep.test_population(), cfg)
show_text(rep.notes_text(), cfg)

# %% [markdown]
# ## 較正：確率は当たっているか（Calibration checked on the test years）
# The yearly probability is calibrated on the validation years, its intercept moved to the most
# recent out-of-time year. Observed vs expected events over the test years, overall and by
# decile, with exact Poisson intervals; when the interval excludes 1 the risk ratios are
# withheld (they would inherit the bias).

# %%
show_text(rep.calibration_check_text(), cfg)
show(rep.deciles(), cfg)
fig = rep.calibration_figure()
if fig is not None:
    show_figure(fig, "較正（observed vs predicted yearly probability, test years pooled）")

# %% [markdown]
# ## 時系列による検証（Temporal validation of the latest test year）
# Each fold trains on fiscal years up to t−1 and validates on t; the final model trains on every
# year before the test year, which tuning never saw.

# %%
show_figure(rep.splits_figure(), "学習・検証・テスト年度（train / validate / test years）")
show(rep.folds(), cfg)

# %% [markdown]
# ## ハイパーパラメータの選択（Tuning for precision at capacity）
# Objective = mean validation precision@k − penalty × its standard deviation across years, so a
# candidate that is good on average but erratic is not chosen. Average precision beside it.

# %%
show_figure(rep.tuning_figure(), "候補ごとの平均と年度間のばらつき（every candidate）")
show(rep.chosen(), cfg)
show_text(rep.calibration_text(), cfg)

# %% [markdown]
# ## 最新のテスト年度の全指標（All metrics of the latest test year, 95% bootstrap CI）

# %%
show(rep.all_metrics(), cfg)
show(rep.year_comparisons(), cfg)
show_text(rep.oracle_text(), cfg)
show_figure(
    rep.curves_figure(),
    "リスト長ごとの適合率と PR 曲線（precision vs k, capacity marked; PR curve）",
)

# %% [markdown]
# ## 参照決定木（Reference decision tree）
# Depth-3 entropy tree with the reference's strict leaf sizes, fitted on the training years.
# Risk ratio = the node's rate / the base rate, with an exact interval, along each path.

# %%
show(rep.segments(), cfg)
show(rep.tree_nodes(), cfg)

# %% [markdown]
# ## 単一変数リスト（Single-variable lists, chosen on training years）

# %%
show(rep.single_variables(), cfg)
show(rep.odds_ratios(), cfg)

# %% [markdown]
# ## 上位k人とそれ以外の比較（Top k vs the rest）

# %%
show(rep.crosstab(), cfg)

# %% [markdown]
# ## 見逃した事例（Error analysis: true cases left out of the top k）

# %%
show(rep.missed(), cfg)
show(rep.missed_vs_caught(), cfg)

# %% [markdown]
# ## リストの安定性（List stability）
# Against the baselines; from year to year (each year's list out of time); and from fold to
# fold (how much the list depends on which years the model learnt from).

# %%
show(rep.stability(), cfg)
show(rep.year_to_year(), cfg)
show(rep.fold_to_fold(), cfg)

# %% [markdown]
# ## 地区別・属性別（Subsets and fairness）
# Within each subset the list is re-thresholded with its proportional share of the capacity.
# Fairness: selection rate, precision, FPR and FNR per group against the largest group; groups
# with too few true cases are flagged, not judged.

# %%
show(rep.subsets(), cfg)
show(rep.fairness(), cfg)

# %% [markdown]
# ## 説明（Item-by-item explanation of the model that built the list）
# Contributions are in log-odds of the model that ranked the list year (before calibration):
# they explain the ranking, item by item, not the probability. Reason codes are each child's
# top three positive contributions.

# %%
show_text(rep.explanation_text(), cfg)
if rep.has_explanation:
    show_figure(rep.importance_figure(), "平均|寄与|（global importance, log-odds）")
    show_figure(rep.beeswarm_figure(), "寄与のビースウォーム（beeswarm）")
    show_figure(rep.dependence_figure(), "依存プロット（dependence plots, top features）")
show(rep.reasons(), cfg)

# %%
close_report(cfg, inputs=rep.inputs)
